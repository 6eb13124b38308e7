//! Pure decisions: which node a task goes to, and what an agent is told to run.

use cobalt_model::batch::{
    ElevationLevel, EnvironmentSetting, IsoDuration, Job, JobPreparationTask, JobReleaseTask,
    StartTask, Task, UserIdentity,
};
use cobalt_proto::{Assignment, RunKind, layout};

/// A node that can take tasks, with its free task slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slots {
    /// The node.
    pub node: String,
    /// Free task slots: its slots minus those of the runs it has (running or queued); below
    /// zero when runs wait in its queue.
    pub free: i32,
    /// How many slots' worth of runs may wait in its queue beyond its free slots.
    pub queue: i32,
}

/// The node for a task needing `required` slots. A node where it starts at once comes first:
/// with `pack`, the first of those (in the given order), so nodes fill up one after another;
/// otherwise (spread) the one with the most free slots, so work spreads evenly. When every
/// node is full, the task waits in the queue of the node with the most room left (whatever
/// the fill type: the shortest wait). None when no queue has room either.
pub fn place(nodes: &[Slots], required: i32, pack: bool) -> Option<usize> {
    let now = nodes.iter().enumerate().filter(|(_, n)| n.free >= required);
    let at_once = if pack {
        now.map(|(i, _)| i).next()
    } else {
        most(now, |n| n.free)
    };
    at_once.or_else(|| {
        let queued = nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.free + n.queue >= required);
        most(queued, |n| n.free + n.queue)
    })
}

/// The index of the node with the highest `room`, the first one on a tie.
fn most<'a>(
    nodes: impl Iterator<Item = (usize, &'a Slots)>,
    room: impl Fn(&Slots) -> i32,
) -> Option<usize> {
    nodes
        .max_by_key(|(i, n)| (room(n), std::cmp::Reverse(*i)))
        .map(|(i, _)| i)
}

fn seconds(d: Option<&IsoDuration>) -> Option<f64> {
    // Anything over ten years is the service's "unlimited".
    d.map(|d| d.value().as_secs_f64())
        .filter(|s| *s < 10.0 * 365.0 * 86_400.0)
}

fn elevated(identity: Option<&UserIdentity>) -> bool {
    identity
        .and_then(|u| u.auto_user.as_ref())
        .and_then(|a| a.elevation_level)
        == Some(ElevationLevel::Admin)
}

fn var(name: &str, value: &str) -> EnvironmentSetting {
    EnvironmentSetting {
        name: name.to_owned(),
        value: Some(value.to_owned()),
    }
}

/// The run of `task` of `job`.
pub fn task_assignment(run: u64, job: &Job, task: &Task) -> Assignment {
    let mut environment = job.spec.common_environment_settings.clone();
    environment.extend(task.spec.environment_settings.iter().cloned());
    environment.push(var("AZ_BATCH_JOB_ID", &job.id));
    environment.push(var("AZ_BATCH_TASK_ID", &task.spec.id));
    Assignment {
        run,
        kind: RunKind::Task,
        dir: layout::task_dir(&job.id, &task.spec.id),
        command_line: task.spec.command_line.clone(),
        environment,
        resource_files: task.spec.resource_files.clone(),
        output_files: task.spec.output_files.clone(),
        max_wall_clock_seconds: seconds(
            task.spec
                .constraints
                .as_ref()
                .and_then(|c| c.max_wall_clock_time.as_ref()),
        ),
        elevated: elevated(task.spec.user_identity.as_ref()),
        job_prep_dir: job
            .spec
            .job_preparation_task
            .as_ref()
            .map(|_| prep_dir(&job.id)),
        slots: u32::try_from(task.required_slots()).unwrap_or(1),
        queued: true,
    }
}

/// The job preparation task's directory of `job`.
pub fn prep_dir(job: &str) -> String {
    format!("{}/jobpreparation", layout::job_dir(job))
}

/// The job release task's directory of `job`.
pub fn release_dir(job: &str) -> String {
    format!("{}/jobrelease", layout::job_dir(job))
}

/// The run of a job's preparation task.
pub fn prep_assignment(run: u64, job: &Job, prep: &JobPreparationTask) -> Assignment {
    let mut environment = job.spec.common_environment_settings.clone();
    environment.extend(prep.environment_settings.iter().cloned());
    environment.push(var("AZ_BATCH_JOB_ID", &job.id));
    environment.push(var(
        "AZ_BATCH_TASK_ID",
        prep.id.as_deref().unwrap_or("jobpreparation"),
    ));
    Assignment {
        run,
        kind: RunKind::JobPreparation,
        dir: prep_dir(&job.id),
        command_line: prep.command_line.clone(),
        environment,
        resource_files: prep.resource_files.clone(),
        output_files: Vec::new(),
        max_wall_clock_seconds: seconds(
            prep.constraints
                .as_ref()
                .and_then(|c| c.max_wall_clock_time.as_ref()),
        ),
        elevated: elevated(prep.user_identity.as_ref()),
        job_prep_dir: Some(prep_dir(&job.id)),
        slots: 0,
        queued: false,
    }
}

/// The run of a job's release task (at most 15 minutes by default).
pub fn release_assignment(run: u64, job: &Job, release: &JobReleaseTask) -> Assignment {
    let mut environment = job.spec.common_environment_settings.clone();
    environment.extend(release.environment_settings.iter().cloned());
    environment.push(var("AZ_BATCH_JOB_ID", &job.id));
    environment.push(var(
        "AZ_BATCH_TASK_ID",
        release.id.as_deref().unwrap_or("jobrelease"),
    ));
    Assignment {
        run,
        kind: RunKind::JobRelease,
        dir: release_dir(&job.id),
        command_line: release.command_line.clone(),
        environment,
        resource_files: release.resource_files.clone(),
        output_files: Vec::new(),
        max_wall_clock_seconds: seconds(release.max_wall_clock_time.as_ref()).or(Some(900.0)),
        elevated: elevated(release.user_identity.as_ref()),
        job_prep_dir: job
            .spec
            .job_preparation_task
            .as_ref()
            .map(|_| prep_dir(&job.id)),
        slots: 0,
        queued: false,
    }
}

/// The run of a pool's start task.
pub fn start_task_assignment(run: u64, start: &StartTask) -> Assignment {
    Assignment {
        run,
        kind: RunKind::StartTask,
        dir: layout::STARTUP.to_owned(),
        command_line: start.command_line.clone(),
        environment: start.environment_settings.clone(),
        resource_files: start.resource_files.clone(),
        output_files: Vec::new(),
        max_wall_clock_seconds: None,
        elevated: elevated(start.user_identity.as_ref()),
        job_prep_dir: None,
        slots: 0,
        queued: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(free: &[i32], queue: i32) -> Vec<Slots> {
        free.iter()
            .enumerate()
            .map(|(i, f)| Slots {
                node: format!("n{i}"),
                free: *f,
                queue,
            })
            .collect()
    }

    #[test]
    fn spread_prefers_the_emptiest_node_and_pack_the_first_that_fits() {
        assert_eq!(place(&nodes(&[1, 3, 3], 0), 1, false), Some(1));
        assert_eq!(place(&nodes(&[1, 3, 3], 0), 1, true), Some(0));
        assert_eq!(place(&nodes(&[1, 3, 3], 0), 2, true), Some(1));
        assert_eq!(place(&nodes(&[1, 1], 0), 2, false), None);
        assert_eq!(place(&nodes(&[], 2), 1, false), None);
    }

    #[test]
    fn a_task_waits_in_a_queue_only_when_no_node_can_start_it() {
        // Pack fills the first node's slots, never its queue, while another node is free.
        assert_eq!(place(&nodes(&[0, 1], 2), 1, true), Some(1));
        assert_eq!(place(&nodes(&[1, 1], 2), 2, true), Some(0));
        // Spread too: a free slot anywhere beats the roomiest queue.
        assert_eq!(place(&nodes(&[-1, 1, 0], 4), 1, false), Some(1));
        // All full: the queue with the most room, for both fill types.
        assert_eq!(place(&nodes(&[-1, 0, -2], 2), 1, true), Some(1));
        assert_eq!(place(&nodes(&[-1, 0, -2], 2), 1, false), Some(1));
        assert_eq!(place(&nodes(&[-2, -2], 2), 1, false), None);
        // A task needing more slots than any node has free waits where the most room is.
        assert_eq!(place(&nodes(&[1, 0], 2), 2, false), Some(0));
    }

    #[test]
    fn unlimited_wall_clock_is_no_limit() {
        assert_eq!(seconds(Some(&IsoDuration::unlimited())), None);
        assert_eq!(seconds(IsoDuration::parse("PT1M").as_ref()), Some(60.0));
    }
}
