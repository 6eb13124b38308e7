//! Pool operations: add, get, list, patch, update properties, delete, resize, stop resize,
//! remove nodes.

use cobalt_model::batch::{
    AllocationState, IsoDuration, MetadataItem, NodeDeallocationOption, Pool, PoolSpec, PoolState,
    StartTask,
};
use cobalt_store::{Kind, Scope, Write};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{BatchError, BatchResult, ErrorCode};
use crate::service::{Batch, Change, Conditions, Page, PageRequest, encode, touch};
use crate::validate;

/// Most task slots a node may have.
const MAX_TASK_SLOTS_PER_NODE: i32 = 256;
/// Most nodes of each kind a pool may ask for (Azure's limit is the account's core quota).
const MAX_TARGET_NODES: i32 = 10_000;

fn scope(account: &str) -> Scope {
    Scope::top(account, Kind::Pool)
}

/// `PATCH /pools/{id}`: only the properties present change.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolPatch {
    /// A new start task (for nodes that join or reboot from now on).
    pub start_task: Option<StartTask>,
    /// New metadata.
    pub metadata: Option<Vec<MetadataItem>>,
    /// New application packages.
    pub application_package_references: Option<Vec<Value>>,
    /// New certificate references (retired feature; kept as sent).
    pub certificate_references: Option<Vec<Value>>,
    /// The node communication mode.
    pub target_node_communication_mode: Option<Value>,
}

/// `POST /pools/{id}/resize`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolResize {
    /// Wanted dedicated nodes.
    pub target_dedicated_nodes: Option<i32>,
    /// Wanted low-priority nodes.
    pub target_low_priority_nodes: Option<i32>,
    /// Longest the resize may take.
    pub resize_timeout: Option<IsoDuration>,
    /// What happens to tasks on removed nodes.
    pub node_deallocation_option: Option<NodeDeallocationOption>,
}

impl Batch {
    fn save_pool(&self, account: &str, pool: &Pool) -> BatchResult<Write> {
        let state = match pool.state {
            PoolState::Active => "active",
            PoolState::Deleting => "deleting",
        };
        Ok(Write::Put(
            scope(account),
            encode(&pool.spec.id, state, "", pool)?,
        ))
    }

    /// The pool `id`, or 404 PoolNotFound.
    pub fn get_pool(&self, account: &str, id: &str, cond: &Conditions) -> BatchResult<Pool> {
        let pool: Pool = self
            .load(&scope(account), id)?
            .ok_or_else(|| BatchError::new(ErrorCode::PoolNotFound))?;
        cond.check(&pool.e_tag, pool.last_modified, true)?;
        Ok(pool)
    }

    /// Adds a pool from its specification (current schema).
    pub fn add_pool(&self, account: &str, body: Value) -> BatchResult<Pool> {
        let mut spec: PoolSpec = validate::parse(body)?;
        validate_pool(&spec)?;
        let _guard = self.lock();
        if self.load::<Pool>(&scope(account), &spec.id)?.is_some() {
            return Err(ErrorCode::PoolExists.into());
        }
        let (e_tag, now) = touch(None);
        spec.resize_timeout.get_or_insert_with(|| {
            IsoDuration::parse("PT15M").unwrap_or_else(|| IsoDuration::days(0))
        });
        spec.task_slots_per_node.get_or_insert(1);
        spec.target_dedicated_nodes.get_or_insert(0);
        spec.target_low_priority_nodes.get_or_insert(0);
        spec.enable_auto_scale.get_or_insert(false);
        spec.other
            .entry("enableInterNodeCommunication")
            .or_insert(Value::Bool(false));
        spec.other
            .entry("taskSchedulingPolicy")
            .or_insert_with(|| serde_json::json!({"nodeFillType": "spread"}));
        let pool = Pool {
            spec,
            e_tag,
            last_modified: now,
            creation_time: now,
            state: PoolState::Active,
            state_transition_time: now,
            allocation_state: AllocationState::Resizing,
            allocation_state_transition_time: now,
            current_dedicated_nodes: 0,
            current_low_priority_nodes: 0,
            resize_errors: Vec::new(),
        };
        self.apply(&[self.save_pool(account, &pool)?])?;
        self.attend(account, Kind::Pool, &pool.spec.id.to_ascii_lowercase());
        self.notify(Change::Pool {
            account: account.to_owned(),
            pool: pool.spec.id.clone(),
        });
        Ok(pool)
    }

    /// A page of pools, each mapped through `keep` (None drops it).
    pub fn list_pools<R>(
        &self,
        account: &str,
        page: &PageRequest,
        keep: impl FnMut(Pool) -> BatchResult<Option<R>>,
    ) -> BatchResult<Page<R>> {
        self.scan(&scope(account), page, keep)
    }

    fn change_pool(
        &self,
        account: &str,
        id: &str,
        cond: &Conditions,
        change: impl FnOnce(&mut Pool) -> BatchResult<()>,
    ) -> BatchResult<Pool> {
        let pool = self.change_pool_quietly(account, id, cond, change)?;
        self.notify(Change::Pool {
            account: account.to_owned(),
            pool: pool.spec.id.clone(),
        });
        Ok(pool)
    }

    /// Changes a pool without telling the dispatcher (the caller does, in its own order).
    fn change_pool_quietly(
        &self,
        account: &str,
        id: &str,
        cond: &Conditions,
        change: impl FnOnce(&mut Pool) -> BatchResult<()>,
    ) -> BatchResult<Pool> {
        let _guard = self.lock();
        let mut pool = self.get_pool(account, id, &Conditions::default())?;
        cond.check(&pool.e_tag, pool.last_modified, false)?;
        if pool.state == PoolState::Deleting {
            return Err(ErrorCode::PoolBeingDeleted.into());
        }
        change(&mut pool)?;
        let (e_tag, now) = touch(Some(&pool.e_tag));
        pool.e_tag = e_tag;
        pool.last_modified = now;
        self.apply(&[self.save_pool(account, &pool)?])?;
        self.attend(account, Kind::Pool, &pool.spec.id.to_ascii_lowercase());
        Ok(pool)
    }

    /// `PATCH`: replaces the properties present in `body`.
    pub fn patch_pool(
        &self,
        account: &str,
        id: &str,
        body: Value,
        cond: &Conditions,
    ) -> BatchResult<Pool> {
        let patch: PoolPatch = validate::parse(body)?;
        if let Some(t) = &patch.start_task {
            validate::start_task("startTask", t)?;
        }
        self.change_pool(account, id, cond, |pool| {
            if let Some(t) = patch.start_task {
                pool.spec.start_task = Some(t);
            }
            if let Some(m) = patch.metadata {
                pool.spec.metadata = m;
            }
            set_other(
                &mut pool.spec,
                "applicationPackageReferences",
                patch.application_package_references.map(Value::from),
            );
            set_other(
                &mut pool.spec,
                "certificateReferences",
                patch.certificate_references.map(Value::from),
            );
            set_other(
                &mut pool.spec,
                "targetNodeCommunicationMode",
                patch.target_node_communication_mode,
            );
            Ok(())
        })
    }

    /// `updateproperties`: replaces start task, packages, certificates and metadata; absent
    /// ones are cleared.
    pub fn update_pool_properties(
        &self,
        account: &str,
        id: &str,
        body: Value,
    ) -> BatchResult<Pool> {
        let patch: PoolPatch = validate::parse(body)?;
        let metadata = patch
            .metadata
            .ok_or_else(|| validate::missing("metadata"))?;
        let packages = patch
            .application_package_references
            .ok_or_else(|| validate::missing("applicationPackageReferences"))?;
        if let Some(t) = &patch.start_task {
            validate::start_task("startTask", t)?;
        }
        self.change_pool(account, id, &Conditions::default(), |pool| {
            pool.spec.start_task = patch.start_task;
            pool.spec.metadata = metadata;
            pool.spec
                .other
                .insert("applicationPackageReferences".into(), Value::from(packages));
            match patch.certificate_references {
                Some(c) => pool
                    .spec
                    .other
                    .insert("certificateReferences".into(), Value::from(c)),
                None => pool.spec.other.remove("certificateReferences"),
            };
            set_other(
                &mut pool.spec,
                "targetNodeCommunicationMode",
                patch.target_node_communication_mode,
            );
            Ok(())
        })
    }

    /// Marks the pool `deleting`; the lifecycle removes it once its nodes are gone.
    pub fn delete_pool(&self, account: &str, id: &str, cond: &Conditions) -> BatchResult<()> {
        self.change_pool(account, id, cond, |pool| {
            let now = cobalt_model::batch::Timestamp::now();
            pool.state = PoolState::Deleting;
            pool.state_transition_time = now;
            Ok(())
        })?;
        Ok(())
    }

    /// Sets new targets; the pool is `resizing` until it reaches them.
    pub fn resize_pool(
        &self,
        account: &str,
        id: &str,
        body: Value,
        cond: &Conditions,
    ) -> BatchResult<Pool> {
        let resize: PoolResize = validate::parse(body)?;
        validate::range(
            "targetDedicatedNodes",
            resize.target_dedicated_nodes,
            0,
            MAX_TARGET_NODES,
        )?;
        validate::range(
            "targetLowPriorityNodes",
            resize.target_low_priority_nodes,
            0,
            MAX_TARGET_NODES,
        )?;
        validate::min_duration("resizeTimeout", resize.resize_timeout.as_ref(), 300)?;
        let option = resize.node_deallocation_option.unwrap_or_default();
        let pool = self.change_pool_quietly(account, id, cond, |pool| {
            if pool.spec.enable_auto_scale == Some(true) {
                return Err(BatchError::new(ErrorCode::OperationInvalidForCurrentState)
                    .with_message(
                        "The pool is sized by an autoscale formula and cannot be resized.",
                    ));
            }
            if pool.allocation_state != AllocationState::Steady {
                return Err(ErrorCode::PoolBeingResized.into());
            }
            pool.spec.target_dedicated_nodes = Some(resize.target_dedicated_nodes.unwrap_or(0));
            pool.spec.target_low_priority_nodes =
                Some(resize.target_low_priority_nodes.unwrap_or(0));
            if let Some(t) = resize.resize_timeout {
                pool.spec.resize_timeout = Some(t);
            }
            let now = cobalt_model::batch::Timestamp::now();
            pool.allocation_state = AllocationState::Resizing;
            pool.allocation_state_transition_time = now;
            pool.resize_errors.clear();
            Ok(())
        })?;
        self.notify(Change::PoolResize {
            account: account.to_owned(),
            pool: pool.spec.id.clone(),
            option,
        });
        self.notify(Change::Pool {
            account: account.to_owned(),
            pool: pool.spec.id.clone(),
        });
        Ok(pool)
    }

    /// Stops a resize: the pool keeps the nodes it has.
    pub fn stop_resize_pool(
        &self,
        account: &str,
        id: &str,
        cond: &Conditions,
    ) -> BatchResult<Pool> {
        self.change_pool(account, id, cond, |pool| {
            if pool.allocation_state == AllocationState::Resizing {
                pool.allocation_state = AllocationState::Stopping;
                pool.allocation_state_transition_time = cobalt_model::batch::Timestamp::now();
            }
            Ok(())
        })
    }

    /// Removes the listed nodes from the pool and lowers its target by as many; their
    /// running tasks are handled per `nodeDeallocationOption` (default requeue).
    pub fn remove_nodes(
        &self,
        account: &str,
        id: &str,
        body: Value,
        cond: &Conditions,
    ) -> BatchResult<Pool> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Remove {
            node_list: Option<Vec<String>>,
            resize_timeout: Option<IsoDuration>,
            node_deallocation_option: Option<NodeDeallocationOption>,
        }
        let remove: Remove = validate::parse(body)?;
        let nodes = remove
            .node_list
            .ok_or_else(|| validate::missing("nodeList"))?;
        if nodes.is_empty() || nodes.len() > 100 {
            return Err(validate::invalid(
                "nodeList",
                nodes.len(),
                "Between 1 and 100 nodes may be removed at once.",
            ));
        }
        validate::min_duration("resizeTimeout", remove.resize_timeout.as_ref(), 300)?;
        let node_scope = Scope::under(account, Kind::Node, &id.to_ascii_lowercase());
        for node in &nodes {
            if self
                .store
                .get(&node_scope, &node.to_ascii_lowercase())?
                .is_none()
            {
                return Err(
                    BatchError::new(ErrorCode::NodeNotFound).with_value("NodeId", node.clone())
                );
            }
        }
        let count = i32::try_from(nodes.len()).unwrap_or(i32::MAX);
        let pool = self.change_pool_quietly(account, id, cond, |pool| {
            if pool.allocation_state != AllocationState::Steady {
                return Err(ErrorCode::PoolBeingResized.into());
            }
            let dedicated = pool.spec.target_dedicated_nodes.unwrap_or(0);
            pool.spec.target_dedicated_nodes = Some((dedicated - count).max(0));
            pool.allocation_state = AllocationState::Resizing;
            pool.allocation_state_transition_time = cobalt_model::batch::Timestamp::now();
            Ok(())
        })?;
        // The dispatcher removes these nodes first, then applies the smaller target.
        self.notify(Change::NodesRemoved {
            account: account.to_owned(),
            pool: pool.spec.id.clone(),
            nodes,
            option: remove.node_deallocation_option.unwrap_or_default(),
        });
        self.notify(Change::Pool {
            account: account.to_owned(),
            pool: pool.spec.id.clone(),
        });
        Ok(pool)
    }
}

fn set_other(spec: &mut PoolSpec, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        spec.other.insert(key.to_owned(), v);
    }
}

fn validate_pool(spec: &PoolSpec) -> BatchResult<()> {
    validate::id("id", &spec.id)?;
    validate::required("vmSize", &spec.vm_size)?;
    let cloud_service = spec.other.contains_key("cloudServiceConfiguration");
    match (&spec.virtual_machine_configuration, cloud_service) {
        (None, false) => return Err(validate::missing("virtualMachineConfiguration")),
        (Some(_), true) => {
            return Err(validate::invalid(
                "cloudServiceConfiguration",
                "",
                "A pool cannot have both cloudServiceConfiguration and virtualMachineConfiguration.",
            ));
        }
        (None, true) => {
            return Err(BatchError::new(ErrorCode::InvalidPropertyValue)
                .with_value("PropertyName", "cloudServiceConfiguration")
                .with_message(
                    "Cloud Services pools are retired; use virtualMachineConfiguration.",
                ));
        }
        (Some(vm), false) => {
            validate::required(
                "virtualMachineConfiguration/nodeAgentSKUId",
                &vm.node_agent_sku_id,
            )?;
            let image = &vm.image_reference;
            let by_name = image.publisher.is_some() || image.offer.is_some() || image.sku.is_some();
            if !by_name && image.other.is_empty() {
                return Err(validate::missing(
                    "virtualMachineConfiguration/imageReference",
                ));
            }
        }
    }
    if spec.enable_auto_scale == Some(true) {
        return Err(BatchError::new(ErrorCode::NotImplemented).with_message(
            "Cobalt does not evaluate autoscale formulas yet; set targetDedicatedNodes instead.",
        ));
    }
    validate::range(
        "targetDedicatedNodes",
        spec.target_dedicated_nodes,
        0,
        MAX_TARGET_NODES,
    )?;
    validate::range(
        "targetLowPriorityNodes",
        spec.target_low_priority_nodes,
        0,
        MAX_TARGET_NODES,
    )?;
    validate::range(
        "taskSlotsPerNode",
        spec.task_slots_per_node,
        1,
        MAX_TASK_SLOTS_PER_NODE,
    )?;
    validate::min_duration("resizeTimeout", spec.resize_timeout.as_ref(), 300)?;
    if let Some(t) = &spec.start_task {
        validate::start_task("startTask", t)?;
    }
    Ok(())
}
