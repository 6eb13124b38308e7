//! Compute node reads. Nodes are created by node agents joining a pool (the scheduler's
//! work); until then a pool has none, and these operations say so truthfully.

use cobalt_model::batch::id_key;
use cobalt_store::{Kind, Scope, StateCount};
use serde_json::Value;

use crate::error::{BatchError, BatchResult, ErrorCode};
use crate::service::{Batch, Conditions, Page, PageRequest};

fn scope(account: &str, pool_id: &str) -> Scope {
    Scope::under(account, Kind::Node, &id_key(pool_id))
}

impl Batch {
    /// A page of the pool's nodes (wire JSON), each mapped through `keep`.
    pub fn list_nodes<R>(
        &self,
        account: &str,
        pool_id: &str,
        page: &PageRequest,
        keep: impl FnMut(Value) -> BatchResult<Option<R>>,
    ) -> BatchResult<Page<R>> {
        self.get_pool(account, pool_id, &Conditions::default())?;
        self.scan(&scope(account, pool_id), page, keep)
    }

    /// The node `node_id` of pool `pool_id`.
    pub fn get_node(&self, account: &str, pool_id: &str, node_id: &str) -> BatchResult<Value> {
        self.get_pool(account, pool_id, &Conditions::default())?;
        self.load(&scope(account, pool_id), node_id)?
            .ok_or_else(|| BatchError::new(ErrorCode::NodeNotFound))
    }

    /// The pool's node counts by state.
    pub fn node_counts(&self, account: &str, pool_id: &str) -> BatchResult<Vec<StateCount>> {
        Ok(self.store.count(&scope(account, pool_id))?)
    }
}
