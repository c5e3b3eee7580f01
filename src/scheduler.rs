//! The engine's clock thread: runs tasks when they are due (a sleep's wake-up, a timer).
//! Tasks left when the engine shuts down run with `premature = true`, as nginx runs timers
//! when a worker exits.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// Work for the clock thread; the flag is `premature`.
pub(crate) type Task = Box<dyn FnOnce(bool) + Send>;

pub(crate) struct Scheduler {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Inner {
    queue: Mutex<Queue>,
    changed: Condvar,
}

#[derive(Default)]
struct Queue {
    due: BinaryHeap<Reverse<(Instant, u64)>>,
    tasks: HashMap<u64, Task>,
    next: u64,
    shutdown: bool,
}

impl Scheduler {
    pub(crate) fn start() -> std::io::Result<Scheduler> {
        let inner = Arc::new(Inner { queue: Mutex::new(Queue::default()), changed: Condvar::new() });
        let worker = inner.clone();
        let thread = std::thread::Builder::new().name("luaengine-clock".into()).spawn(move || worker.run())?;
        Ok(Scheduler { inner, thread: Mutex::new(Some(thread)) })
    }

    /// Runs `task` on the clock thread at `when` (at once if it is past). After shutdown the
    /// task runs right here, premature.
    pub(crate) fn at(&self, when: Instant, task: Task) {
        let mut queue = self.inner.queue.lock();
        if queue.shutdown {
            drop(queue);
            return task(true);
        }
        queue.next += 1;
        let id = queue.next;
        queue.tasks.insert(id, task);
        queue.due.push(Reverse((when, id)));
        self.inner.changed.notify_one();
    }

    /// Stops the clock thread and runs every task left, premature.
    pub(crate) fn shutdown(&self) {
        let tasks: Vec<Task> = {
            let mut queue = self.inner.queue.lock();
            queue.shutdown = true;
            self.inner.changed.notify_one();
            let mut left: Vec<(Instant, u64)> = queue.due.drain().map(|Reverse(due)| due).collect();
            left.sort_unstable();
            left.into_iter().filter_map(|(_, id)| queue.tasks.remove(&id)).collect()
        };
        if let Some(thread) = self.thread.lock().take() {
            // The clock thread itself may drop the last engine handle (from a timer): no join then.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
        for task in tasks {
            task(true);
        }
    }
}

impl Drop for Scheduler {
    /// Normally the engine shut the clock down already; this covers an engine that failed
    /// while being built.
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Inner {
    fn run(&self) {
        let mut queue = self.queue.lock();
        loop {
            if queue.shutdown {
                return;
            }
            let now = Instant::now();
            match queue.due.peek().copied() {
                Some(Reverse((when, id))) if when <= now => {
                    queue.due.pop();
                    if let Some(task) = queue.tasks.remove(&id) {
                        drop(queue);
                        // A task's panic is the task's bug; the clock must keep ticking.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task(false)));
                        queue = self.queue.lock();
                    }
                }
                Some(Reverse((when, _))) => {
                    self.changed.wait_until(&mut queue, when);
                }
                None => self.changed.wait(&mut queue),
            }
        }
    }
}
