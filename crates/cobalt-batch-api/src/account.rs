//! Account-level operations: the images and node agent SKUs Cobalt offers, and node counts.
//!
//! Cobalt's nodes are node agent processes on Linux hosts, so every image in the catalogue
//! runs the same way; the catalogue exists so that SDK code which picks an image (the
//! tutorial's `select_latest_verified_vm_image_with_node_agent_sku`, newer `ubuntu-server`
//! lookups) finds what it looks for.

use serde_json::{Value, json};

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

/// `GET /supportedimages` entries (2018-12-01 and later).
pub fn supported_images() -> Vec<Value> {
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
pub fn node_agent_skus() -> Vec<Value> {
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
