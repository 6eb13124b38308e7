//! The node directory (batch-rest.md §11): creating its standard directories, resolving paths
//! the server sends (never outside the root), and the `AZ_BATCH_*` path variables of a run.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use cobalt_proto::layout;

use crate::AgentError;

/// The node root and its standard directories, all absolute.
#[derive(Debug)]
pub(crate) struct NodeDirs {
    /// `AZ_BATCH_NODE_ROOT_DIR`, canonical.
    pub root: PathBuf,
}

impl NodeDirs {
    /// Creates the root and `shared` (mode 1777, like /tmp), `startup`, `workitems` and
    /// `fsmounts`.
    pub fn prepare(root: &Path) -> Result<Self, AgentError> {
        let fail = |path: &Path| {
            let path = path.to_owned();
            move |source| AgentError::NodeRoot { path, source }
        };
        fs::create_dir_all(root).map_err(fail(root))?;
        let root = root.canonicalize().map_err(fail(root))?;
        for dir in [
            layout::SHARED,
            layout::STARTUP,
            layout::WORKITEMS,
            layout::MOUNTS,
        ] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(fail(&path))?;
        }
        let shared = root.join(layout::SHARED);
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).map_err(fail(&shared))?;
        Ok(Self { root })
    }

    /// `rel` (a path the server sent, relative to the root) as an absolute path; None if it is
    /// absolute or climbs out with `..`. The empty path is the root itself.
    pub fn resolve(&self, rel: &str) -> Option<PathBuf> {
        safe_relative(rel).map(|p| self.root.join(p))
    }

    /// The path variables of the node, the same for every run.
    pub fn node_variables(&self) -> Vec<(String, String)> {
        let show = |p: PathBuf| p.to_string_lossy().into_owned();
        vec![
            ("AZ_BATCH_NODE_ROOT_DIR".into(), show(self.root.clone())),
            (
                "AZ_BATCH_NODE_SHARED_DIR".into(),
                show(self.root.join(layout::SHARED)),
            ),
            (
                "AZ_BATCH_NODE_STARTUP_DIR".into(),
                show(self.root.join(layout::STARTUP)),
            ),
            (
                "AZ_BATCH_NODE_MOUNTS_DIR".into(),
                show(self.root.join(layout::MOUNTS)),
            ),
        ]
    }
}

/// The path variables of a run whose task directory is `task_dir`, beyond the node's.
pub fn task_variables(task_dir: &Path) -> [(String, String); 3] {
    let show = |p: PathBuf| p.to_string_lossy().into_owned();
    [
        ("AZ_BATCH_TASK_DIR".into(), show(task_dir.to_owned())),
        (
            "AZ_BATCH_TASK_WORKING_DIR".into(),
            show(task_dir.join(layout::WD)),
        ),
        (
            "AZ_BATCH_CERTIFICATES_DIR".into(),
            show(task_dir.join("certs")),
        ),
    ]
}

/// `rel` as a relative path with no `..`, no root and no `.` components; None when it is
/// absolute or contains `..` anywhere. The empty string gives the empty path.
pub(crate) fn safe_relative(rel: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in Path::new(rel).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Whether a user other than the owner can reach `path` (every ancestor has `o+x`): tasks that
/// run as `nobody` need that to enter their working directory.
pub(crate) fn reachable_by_others(path: &Path) -> bool {
    path.ancestors().all(|dir| {
        fs::metadata(dir)
            .map(|m| m.permissions().mode() & 0o001 != 0)
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_never_escape() {
        let check = |input: &str, expected: Option<&str>| {
            assert_eq!(
                safe_relative(input),
                expected.map(PathBuf::from),
                "{input:?}"
            );
        };
        check("", Some(""));
        check("a/b.txt", Some("a/b.txt"));
        check("./a//b/", Some("a/b"));
        check("a/./b", Some("a/b"));
        check("..", None);
        check("a/../b", None);
        check("a/..", None);
        check("/etc/passwd", None);
        check("a/b/../../..", None);
        check("..hidden/x", Some("..hidden/x"));
    }

    #[test]
    fn standard_directories_and_variables() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = NodeDirs::prepare(&dir.path().join("node")).unwrap();
        let mode = fs::metadata(dirs.root.join("shared"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o1777);
        assert!(dirs.root.join("startup").is_dir() && dirs.root.join("workitems").is_dir());
        let task = dirs.resolve("workitems/j/job-1/t").unwrap();
        let mut vars = dirs.node_variables();
        vars.extend(task_variables(&task));
        let get = |name: &str| &vars.iter().find(|(k, _)| k == name).unwrap().1;
        assert_eq!(
            get("AZ_BATCH_TASK_WORKING_DIR"),
            &format!("{}/wd", task.display())
        );
        assert_eq!(
            get("AZ_BATCH_CERTIFICATES_DIR"),
            &format!("{}/certs", task.display())
        );
        assert!(vars.iter().all(|(_, v)| v.starts_with('/')));
        assert!(dirs.resolve("../x").is_none());
    }
}
