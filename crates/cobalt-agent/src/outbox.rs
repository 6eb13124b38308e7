//! The events a node has to tell the server, waiting for the next `Events` message.
//!
//! A run's `Started` is held back for [`START_DELAY`]: a run that ends within it is reported
//! by its `Ended` alone (which carries its start time), so a short task costs the server one
//! event and one write instead of two. Every other event is ready at once.

use std::collections::VecDeque;
use std::time::Duration;

use cobalt_proto::Event;
use tokio::time::Instant;

/// How long a run's `Started` waits for the run's `Ended`, whatever else is sent meanwhile.
pub const START_DELAY: Duration = Duration::from_millis(5);

/// Events not yet sent.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Events to send now, in the order they happened.
    ready: Vec<Event>,
    /// `Started` events and when each is due, oldest first.
    held: VecDeque<(Instant, Event)>,
}

impl Outbox {
    /// Adds an event that happened at `now`. An `Ended` takes the place of its run's held
    /// `Started`.
    pub fn add(&mut self, event: Event, now: Instant) {
        match event {
            Event::Started { .. } => self.held.push_back((now + START_DELAY, event)),
            Event::Ended(ref end) => {
                let run = end.run;
                self.held
                    .retain(|(_, e)| !matches!(e, Event::Started { run: r, .. } if *r == run));
                self.ready.push(event);
            }
            Event::Began { .. } | Event::Withdrawn { .. } => self.ready.push(event),
        }
    }

    /// Makes the held events due by `now` ready; all of them with `None`.
    pub fn release(&mut self, now: Option<Instant>) {
        while let Some((due, _)) = self.held.front() {
            if now.is_some_and(|now| *due > now) {
                break;
            }
            if let Some((_, event)) = self.held.pop_front() {
                self.ready.push(event);
            }
        }
    }

    /// When the next message should go: `now` if events are ready, else when the oldest held
    /// one is due.
    pub fn due(&self, now: Instant) -> Option<Instant> {
        if self.ready.is_empty() {
            self.held.front().map(|(due, _)| *due)
        } else {
            Some(now)
        }
    }

    /// How many events are ready.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// The events ready to send.
    pub fn ready(&self) -> &[Event] {
        &self.ready
    }

    /// Takes up to `n` ready events, oldest first.
    pub fn take(&mut self, n: usize) -> Vec<Event> {
        let n = n.min(self.ready.len());
        self.ready.drain(..n).collect()
    }

    /// Puts back events that could not be sent, ahead of the others.
    pub fn put_back(&mut self, events: Vec<Event>) {
        self.ready.splice(0..0, events);
    }
}

#[cfg(test)]
mod tests {
    use cobalt_model::batch::{TaskResult, Timestamp};
    use cobalt_proto::RunEnd;

    use super::*;

    fn started(run: u64) -> Event {
        Event::Started {
            run,
            at: Timestamp::now(),
            pgid: None,
        }
    }

    fn ended(run: u64) -> Event {
        Event::Ended(RunEnd {
            run,
            start_time: Some(Timestamp::now()),
            end_time: Timestamp::now(),
            exit_code: Some(0),
            result: TaskResult::Success,
            failure_info: None,
            pre_processing_error: false,
            file_upload_error: false,
        })
    }

    fn runs(events: &[Event]) -> Vec<(&'static str, u64)> {
        events
            .iter()
            .map(|e| match e {
                Event::Began { run, .. } => ("began", *run),
                Event::Started { run, .. } => ("started", *run),
                Event::Ended(end) => ("ended", end.run),
                Event::Withdrawn { run } => ("withdrawn", *run),
            })
            .collect()
    }

    #[test]
    fn an_end_takes_the_place_of_its_held_start() {
        let t0 = Instant::now();
        let mut outbox = Outbox::default();
        for event in [started(1), started(2), ended(1), ended(3)] {
            outbox.add(event, t0);
        }
        assert_eq!(runs(outbox.ready()), [("ended", 1), ("ended", 3)]);
        outbox.release(None);
        assert_eq!(
            runs(outbox.ready()),
            [("ended", 1), ("ended", 3), ("started", 2)]
        );
    }

    #[test]
    fn a_start_waits_its_delay_even_when_other_events_go() {
        let t0 = Instant::now();
        let mut outbox = Outbox::default();
        outbox.add(started(1), t0);
        assert_eq!(outbox.due(t0), Some(t0 + START_DELAY));
        let t1 = t0 + START_DELAY / 2;
        outbox.add(started(2), t1);
        outbox.add(Event::Withdrawn { run: 3 }, t1);
        assert_eq!(outbox.due(t1), Some(t1), "a ready event goes at once");
        outbox.release(Some(t1));
        assert_eq!(runs(&outbox.take(10)), [("withdrawn", 3)]);
        assert_eq!(outbox.due(t1), Some(t0 + START_DELAY));
        outbox.release(Some(t0 + START_DELAY));
        assert_eq!(runs(&outbox.take(10)), [("started", 1)]);
        assert_eq!(outbox.due(t1), Some(t1 + START_DELAY));
    }

    #[test]
    fn events_put_back_go_first() {
        let t0 = Instant::now();
        let mut outbox = Outbox::default();
        for event in [ended(1), ended(2), ended(3)] {
            outbox.add(event, t0);
        }
        let first = outbox.take(2);
        outbox.add(ended(4), t0);
        outbox.put_back(first);
        assert_eq!(
            runs(&outbox.take(10)),
            [("ended", 1), ("ended", 2), ("ended", 3), ("ended", 4)]
        );
    }
}
