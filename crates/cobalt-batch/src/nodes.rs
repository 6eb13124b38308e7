//! Compute nodes: reads for the API, and the writes of the dispatcher that runs them (node
//! records, the pool's current size).

use cobalt_model::batch::{AllocationState, Node, Pool, PoolState, Timestamp, id_key};
use cobalt_store::{Kind, Scope, StateCount, Write};
use serde_json::Value;

use crate::error::{BatchError, BatchResult, ErrorCode};
use crate::service::{Batch, Conditions, Page, PageRequest, encode};

/// The write that saves node `n` in `node_scope` (its pool's nodes).
pub(crate) fn node_write(node_scope: &Scope, n: &Node) -> BatchResult<Write> {
    Ok(Write::Put(
        node_scope.clone(),
        encode(&n.id, n.state.as_str(), "", n)?,
    ))
}

pub(crate) fn scope(account: &str, pool_id: &str) -> Scope {
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
    pub fn get_node(&self, account: &str, pool_id: &str, node_id: &str) -> BatchResult<Node> {
        self.get_pool(account, pool_id, &Conditions::default())?;
        self.load(&scope(account, pool_id), node_id)?
            .ok_or_else(|| BatchError::new(ErrorCode::NodeNotFound))
    }

    /// The pool's node counts by state.
    pub fn node_counts(&self, account: &str, pool_id: &str) -> BatchResult<Vec<StateCount>> {
        Ok(self.store.count(&scope(account, pool_id))?)
    }

    /// Every node record of a pool.
    pub fn pool_nodes(&self, account: &str, pool_id: &str) -> BatchResult<Vec<Node>> {
        let page = PageRequest {
            limit: 100_000,
            ..PageRequest::default()
        };
        Ok(self
            .scan(&scope(account, pool_id), &page, |n: Node| Ok(Some(n)))?
            .items)
    }

    /// Every pool of an account.
    pub fn all_pools(&self, account: &str) -> BatchResult<Vec<Pool>> {
        let mut out = Vec::new();
        let mut page = PageRequest {
            limit: 1000,
            ..PageRequest::default()
        };
        loop {
            let p = self.list_pools(account, &page, |pool| Ok(Some(pool)))?;
            out.extend(p.items);
            match p.next {
                Some(next) => page.after = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// Writes node records and removes others, in one transaction; with `recount` (nodes
    /// joined or left, or the pool's target changed) it then brings the pool's current size
    /// (and `allocationState`: `resizing` → `steady` at the target) up to date.
    pub fn save_nodes(
        &self,
        account: &str,
        pool_id: &str,
        nodes: &[Node],
        removed: &[String],
        recount: bool,
    ) -> BatchResult<()> {
        let _guard = self.lock();
        let node_scope = scope(account, pool_id);
        let mut writes = Vec::new();
        for n in nodes {
            writes.push(node_write(&node_scope, n)?);
        }
        for id in removed {
            writes.push(Write::Delete(node_scope.clone(), id_key(id)));
        }
        self.apply_deferred(&writes)?;
        if recount {
            self.refresh_pool_size(account, pool_id)?;
        }
        Ok(())
    }

    /// Sets the pool's current node counts from its node records (the write lock is held).
    fn refresh_pool_size(&self, account: &str, pool_id: &str) -> BatchResult<()> {
        let Some(mut pool) = self.load::<Pool>(&Scope::top(account, Kind::Pool), pool_id)? else {
            return Ok(());
        };
        let nodes = self.pool_nodes(account, pool_id)?;
        // A node leaving the pool still counts until it is gone (the pool is resizing).
        let dedicated = nodes.iter().filter(|n| n.is_dedicated).count();
        let low = nodes.iter().filter(|n| !n.is_dedicated).count();
        let dedicated = i32::try_from(dedicated).unwrap_or(i32::MAX);
        let low = i32::try_from(low).unwrap_or(i32::MAX);
        let reached = dedicated == pool.spec.target_dedicated_nodes.unwrap_or(0)
            && low == pool.spec.target_low_priority_nodes.unwrap_or(0);
        let settle = pool.state == PoolState::Active
            && pool.allocation_state == AllocationState::Resizing
            && reached;
        if pool.current_dedicated_nodes == dedicated
            && pool.current_low_priority_nodes == low
            && !settle
        {
            return Ok(());
        }
        pool.current_dedicated_nodes = dedicated;
        pool.current_low_priority_nodes = low;
        if settle {
            pool.allocation_state = AllocationState::Steady;
            pool.allocation_state_transition_time = Timestamp::now();
        }
        let state = match pool.state {
            PoolState::Active => "active",
            PoolState::Deleting => "deleting",
        };
        let write = Write::Put(
            Scope::top(account, Kind::Pool),
            encode(&pool.spec.id, state, "", &pool)?,
        );
        self.apply_deferred(&[write])
    }
}
