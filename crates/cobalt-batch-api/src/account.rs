//! Account-level operations: the images and node agent SKUs Cobalt offers, and node counts.
//!
//! Cobalt's nodes are node agent processes on Linux hosts, so every image in the catalogue
//! runs the same way; the catalogue exists so that SDK code which picks an image (the
//! tutorial's `select_latest_verified_vm_image_with_node_agent_sku`, newer `ubuntu-server`
//! lookups) finds what it looks for.

use axum::response::Response;
use serde_json::{Value, json};

use crate::error::BatchResult;
use crate::odata::ListKind;
use crate::service::{BatchService, Req, list_response, respond, static_page};

/// One image of the catalogue.
struct Image {
    publisher: &'static str,
    offer: &'static str,
    sku: &'static str,
    node_agent_sku: &'static str,
}

const CATALOGUE: &[Image] = &[
    Image {
        publisher: "Canonical",
        offer: "UbuntuServer",
        sku: "16.04-LTS",
        node_agent_sku: "batch.node.ubuntu 16.04",
    },
    Image {
        publisher: "Canonical",
        offer: "UbuntuServer",
        sku: "18.04-LTS",
        node_agent_sku: "batch.node.ubuntu 18.04",
    },
    Image {
        publisher: "canonical",
        offer: "0001-com-ubuntu-server-focal",
        sku: "20_04-lts",
        node_agent_sku: "batch.node.ubuntu 20.04",
    },
    Image {
        publisher: "canonical",
        offer: "0001-com-ubuntu-server-jammy",
        sku: "22_04-lts",
        node_agent_sku: "batch.node.ubuntu 22.04",
    },
    Image {
        publisher: "canonical",
        offer: "ubuntu-24_04-lts",
        sku: "server",
        node_agent_sku: "batch.node.ubuntu 24.04",
    },
    Image {
        publisher: "debian",
        offer: "debian-12",
        sku: "12",
        node_agent_sku: "batch.node.debian 12",
    },
];

fn image_reference(i: &Image) -> Value {
    json!({"publisher": i.publisher, "offer": i.offer, "sku": i.sku, "version": "latest"})
}

/// `GET /supportedimages`.
pub(crate) fn list_supported_images(req: &Req) -> BatchResult<Response> {
    let page = static_page(req, ListKind::SupportedImages, supported_images())?;
    list_response(req, "supportedimages", page)
}

/// `GET /nodeagentskus` (2017-era api-versions).
pub(crate) fn list_node_agent_skus(req: &Req) -> BatchResult<Response> {
    let page = static_page(req, ListKind::NodeAgentSkus, node_agent_skus())?;
    list_response(req, "nodeagentskus", page)
}

/// `GET /applications`: Cobalt has no application packages, so the list is empty.
pub(crate) fn list_applications(req: &Req) -> BatchResult<Response> {
    let page = static_page(req, ListKind::Applications, Vec::new())?;
    list_response(req, "applications", page)
}

/// `GET /poolusagemetrics`: Cobalt bills nothing, so there are no usage records.
pub(crate) fn list_pool_usage_metrics(req: &Req) -> BatchResult<Response> {
    let page = static_page(req, ListKind::PoolUsageMetrics, Vec::new())?;
    list_response(req, "poolusagemetrics", page)
}

/// `GET /nodecounts`: each pool's nodes by state, dedicated and low-priority.
pub(crate) fn list_pool_node_counts(svc: &BatchService, req: &Req) -> BatchResult<Response> {
    let pools: Vec<String> = svc
        .batch
        .all_pools(&req.account)?
        .into_iter()
        .map(|p| p.spec.id)
        .collect();
    let mut items = Vec::new();
    for id in pools {
        let mut dedicated = json!({});
        for state in NODE_COUNT_KEYS {
            dedicated[state.1] = json!(0);
        }
        let low_priority = dedicated.clone();
        let mut total = 0;
        for c in svc.batch.node_counts(&req.account, &id)? {
            if let Some((_, key)) = NODE_COUNT_KEYS.iter().find(|(s, _)| *s == c.state) {
                dedicated[*key] = json!(c.count);
                total += c.count;
            }
        }
        dedicated["total"] = json!(total);
        let mut low_priority = low_priority;
        low_priority["total"] = json!(0);
        items.push(json!({"poolId": id, "dedicated": dedicated, "lowPriority": low_priority}));
    }
    let page = static_page(req, ListKind::PoolNodeCounts, items)?;
    list_response(req, "nodecounts", page)
}

/// `GET /lifetimejobstats` (2017-era api-versions).
pub(crate) fn get_lifetime_job_stats(svc: &BatchService, req: &Req) -> BatchResult<Response> {
    let stats = svc.batch.lifetime_job_stats(&req.account)?;
    lifetime(req, &stats, "/lifetimejobstats")
}

/// `GET /lifetimepoolstats` (2017-era api-versions).
pub(crate) fn get_lifetime_pool_stats(svc: &BatchService, req: &Req) -> BatchResult<Response> {
    let stats = svc.batch.lifetime_pool_stats(&req.account)?;
    lifetime(req, &stats, "/lifetimepoolstats")
}

fn lifetime<T: serde::Serialize>(req: &Req, stats: &T, path: &str) -> BatchResult<Response> {
    let mut body = serde_json::to_value(stats).map_err(|e| {
        tracing::error!(error = %e, "cannot encode statistics");
        crate::error::BatchError::new(crate::error::ErrorCode::InternalError)
    })?;
    body["url"] = Value::String(req.url(path));
    respond(http::StatusCode::OK, &[], Some(&body))
}

/// Node states and their key in `NodeCounts`.
const NODE_COUNT_KEYS: &[(&str, &str)] = &[
    ("creating", "creating"),
    ("idle", "idle"),
    ("offline", "offline"),
    ("preempted", "preempted"),
    ("rebooting", "rebooting"),
    ("reimaging", "reimaging"),
    ("running", "running"),
    ("starting", "starting"),
    ("starttaskfailed", "startTaskFailed"),
    ("leavingpool", "leavingPool"),
    ("unknown", "unknown"),
    ("unusable", "unusable"),
    ("waitingforstarttask", "waitingForStartTask"),
    ("upgradingos", "upgradingOS"),
    ("deallocated", "deallocated"),
    ("deallocating", "deallocating"),
];

/// `GET /supportedimages` entries (2018-12-01 and later).
fn supported_images() -> Vec<Value> {
    CATALOGUE
        .iter()
        .map(|i| {
            json!({
                "nodeAgentSKUId": i.node_agent_sku,
                "imageReference": image_reference(i),
                "osType": "linux",
                "verificationType": "verified",
            })
        })
        .collect()
}

/// `GET /nodeagentskus` entries (2017 schema): the catalogue grouped by node agent SKU.
fn node_agent_skus() -> Vec<Value> {
    let mut skus: Vec<(&str, Vec<Value>)> = Vec::new();
    for i in CATALOGUE {
        match skus.iter_mut().find(|(id, _)| *id == i.node_agent_sku) {
            Some((_, refs)) => refs.push(image_reference(i)),
            None => skus.push((i.node_agent_sku, vec![image_reference(i)])),
        }
    }
    skus.into_iter()
        .map(|(id, refs)| json!({"id": id, "verifiedImageReferences": refs, "osType": "linux"}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tutorial_finds_its_image() {
        // helpers.select_latest_verified_vm_image_with_node_agent_sku('Canonical', 'UbuntuServer', '16')
        let mut found = Vec::new();
        for sku in node_agent_skus() {
            for r in sku["verifiedImageReferences"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if r["publisher"] == "Canonical"
                    && r["offer"] == "UbuntuServer"
                    && r["sku"].as_str().is_some_and(|s| s.starts_with("16"))
                {
                    found.push(sku["id"].clone());
                }
            }
        }
        assert_eq!(found, vec![json!("batch.node.ubuntu 16.04")]);
        assert!(
            supported_images()
                .iter()
                .any(|i| i["imageReference"]["sku"] == "22_04-lts")
        );
    }
}
