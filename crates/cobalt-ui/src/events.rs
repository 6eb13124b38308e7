//! `GET /ui/api/events`: server-sent events. The stream sends `change` (data: the Batch
//! generation) at once and whenever [`cobalt_batch::Batch::generation`] moved, checked every
//! [`POLL`]; the page then fetches again what it shows. It ends at shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;

use crate::{Principal, Ui};

/// How often the generation is compared.
pub(crate) const POLL: Duration = Duration::from_millis(250);

/// The change stream of the Batch service.
pub(crate) async fn events(
    State(ui): State<Arc<Ui>>,
    _p: Principal,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let batch = Arc::clone(&ui.config.batch);
    let stop = ui.config.stop.clone();
    let stream = futures_util::stream::unfold((None, stop), move |(last, mut stop)| {
        let batch = Arc::clone(&batch);
        async move {
            loop {
                if *stop.borrow() {
                    return None;
                }
                let generation = batch.generation();
                if last != Some(generation) {
                    let event = Event::default()
                        .event("change")
                        .data(generation.to_string());
                    return Some((Ok(event), (Some(generation), stop)));
                }
                tokio::select! {
                    () = tokio::time::sleep(POLL) => {}
                    changed = stop.changed() => {
                        if changed.is_err() {
                            return None;
                        }
                    }
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
