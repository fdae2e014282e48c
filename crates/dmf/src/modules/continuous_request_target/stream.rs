//! The streaming machinery: N requests created at open, each re-armed on completion with fresh
//! buffers from the module's pools, until streaming stops.
//!
//! Each slot has a phase, changed under the state lock:
//!
//! ```text
//! Idle --start--> Sending --send returned--> InFlight --completed--> Completing --resend--> Sending
//!   ^                |                                                ^    |
//!   |                +------- completed before the send returned -----+    |
//!   +------------------------------- stream ends --------------------------+
//! ```
//!
//! # Inline completion: a loop, not recursion
//!
//! A target may complete a request before `WdfRequestSend` returns: KMDF presents a request to a
//! local device's queue in the sender's thread, and a queue callback that completes it at once
//! runs the sender's completion routine right there (a sequential queue may also present, and
//! complete, *another* request it was holding). A completion routine that resent from inside
//! itself would nest one level deeper per request until the kernel stack overflows. So no
//! completion is processed inside a send of this module:
//!
//! * a completion that finds its own slot still `Sending` (its send has not returned yet, on
//!   this thread or another one) only records itself in the slot, without the lock (the
//!   slot's `send` word and `early_*` fields; the sender's section after the send reads them);
//! * a completion of another slot that arrives while any send of this module is in progress
//!   (`in_send`) goes to the `ready` list;
//!
//! and returns. Every sender, in the section where its send has returned, moves its own early
//! completion to the back of `ready` and takes the oldest listed completion to process next: the
//! sending code is a loop that goes on while there is work. Whoever is mid-send when a completion
//! is listed looks at the list afterwards, and a loop ends only having found it empty (or having
//! handed it to the work item), so no completion is left behind. On one thread, completion
//! routines of this module nest at most two deep: the one whose loop sends, and the one inside
//! that send.
//!
//! A loop processes at most [`LOOP_BUDGET`] completions, then leaves the list to the module's
//! work item (which loops the same way and queues itself again), so a target that always
//! completes inline holds no thread for ever: not the caller of `start`, not a DPC.
//!
//! Per streamed request against a target that completes inline, a loop takes the state lock
//! twice, as DMF's C does: to commit the resend, and after the send returned (where it also
//! takes the next completion's buffers and reference). The completion routine of a send that
//! has not returned yet takes no lock; one that completes later takes it once more. A resend
//! reuses the buffers its slot had (zeroed), so the pools' locks are not taken either.
//!
//! # References and lifetime
//!
//! Every send holds a module reference, kept in its slot from just before `WdfRequestSend`
//! until its completion is taken for processing; the loop then hands it on to the next send of
//! the slot, or releases it in the very lock section that ends the stream. While a slot is
//! `Sending` nothing but its sender releases that reference (an early completion leaves it in
//! the slot), and a listed completion is taken by exactly one loop. So the state of a slot is
//! only touched while the reference of its current send is held, or in the section that
//! releases it: close, which waits for every reference, never clears the slots under a running
//! send.
//!
//! A completion routine still runs a little after it released its last reference (it drops its
//! slot, which owns the request, and its strong handle on the shared state, which owns the
//! pools, the lock and the work item). Close therefore also waits for a count of running
//! completion routines (`CompletionGate`, which owns no framework object) to reach zero: every
//! framework object of the module is deleted by close itself, never later by a completion on
//! another thread (where the device might already be gone).
//!
//! A stop marks the module stopping (a resend that has not filled its input yet then ends its
//! stream; one that has is sent and cancelled), cancels every `InFlight` request and asks every
//! `Sending` one to cancel itself once sent; a slot whose stream ends goes `Idle` and signals
//! `ended`.

use alloc::collections::VecDeque;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU32, AtomicUsize, Ordering};
use core::time::Duration;

use wdk_sys::{WDFIOTARGET, WDFOBJECT};

use super::{BufferDisposition, BufferInputCallback, BufferOutputCallback, OutputBuffer};
use crate::core::{HeldReference, ReferenceSource};
use crate::modules::buffer_pool::{BufferPool, PoolBuffer};
use crate::modules::request_target::RequestType;
use crate::modules::request_target::single::NO_TARGET;
use crate::wdf::NtStatus;
use crate::wdf::event::{Event, EventKind};
use crate::wdf::io_target::IoTarget;
use crate::wdf::irql;
use crate::wdf::request::{Completion, MemoryRange, Request, SharedCompletion, Timeout};
use crate::wdf::spin_lock::SpinLock;
use crate::wdf::work_item::WorkItem;

/// Completions one loop (a completion routine, `start`, one run of the work item) processes
/// before it leaves the rest to the work item.
pub(crate) const LOOP_BUDGET: usize = 32;

/// Buffers a completed send leaves for the resend of its slot.
#[derive(Default)]
struct Kept {
    input: Option<PoolBuffer>,
    output: Option<PoolBuffer>,
}

/// A buffer kept for a resend, zeroed as its source pool zeroes a returned buffer.
fn zeroed(mut buffer: PoolBuffer) -> PoolBuffer {
    let (data, context) = buffer.parts_mut();
    data.fill(0);
    context.fill(0);
    buffer
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Sending,
    InFlight,
    Completing,
}

struct SlotState {
    phase: Phase,
    /// Bumped by every send of this slot.
    seq: u64,
    /// A stop found this slot `Sending`: cancel right after the send.
    cancel_pending: bool,
    /// Set by `start` for the slots it is about to send.
    reserved: bool,
    /// The start count when this slot's stream was last (re)sent.
    stream_start: u64,
    /// A stop's cancel may have hit the send with this seq (0: none).
    suspect_seq: u64,
    /// The completion of the current send, when it came before the send returned: the sender
    /// lists it.
    early: Option<Completion>,
    input: Option<PoolBuffer>,
    output: Option<PoolBuffer>,
    reference: Option<HeldReference>,
}

/// One streaming request.
pub(crate) struct StreamSlot {
    index: usize,
    request: Request,
    shared: Weak<StreamShared>,
    gate: Arc<CompletionGate>,
    /// The race between a send's return and its completion, decided without the lock:
    /// `SEND_NONE`, `SEND_PENDING` (committed, the send has not returned: set in the commit
    /// section), `SEND_EARLY` (completed before the send returned: the completion is in the
    /// `early_*` fields, written before the word). The sender's section after the send swaps
    /// it back to `SEND_NONE`.
    send: AtomicU8,
    early_status: AtomicI32,
    early_information: AtomicUsize,
    early_ioctl: AtomicU32,
}

const SEND_NONE: u8 = 0;
const SEND_PENDING: u8 = 1;
const SEND_EARLY: u8 = 2;

impl StreamSlot {
    /// Records `completion` as the early completion of the send in progress, if its send has
    /// not returned yet (no lock: the sender reads it in its section after the send).
    fn record_early(&self, completion: &Completion) -> bool {
        if self.send.load(Ordering::Acquire) != SEND_PENDING {
            return false;
        }
        self.early_status
            .store(completion.status.raw(), Ordering::Relaxed);
        self.early_information
            .store(completion.information, Ordering::Relaxed);
        self.early_ioctl.store(completion.ioctl, Ordering::Relaxed);
        self.send
            .compare_exchange(
                SEND_PENDING,
                SEND_EARLY,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// The sender's side, in its section after the send: the early completion, if one came.
    fn take_early(&self) -> Option<Completion> {
        if self.send.swap(SEND_NONE, Ordering::AcqRel) != SEND_EARLY {
            return None;
        }
        Some(Completion {
            status: NtStatus::from_raw(self.early_status.load(Ordering::Relaxed)),
            information: self.early_information.load(Ordering::Relaxed),
            ioctl: self.early_ioctl.load(Ordering::Relaxed),
        })
    }
}

/// Completion routines of the module still running. A completion routine's last module
/// reference is released inside it (in the section that ends its stream), and what it holds
/// strongly (its slot, which owns the request, and the module's shared state, which owns the
/// pools, the lock and the work item) is dropped after that: close waits for this count to
/// reach zero after the references, so that every framework object the module owns is deleted
/// by close, on the closing thread, and never afterwards by a completion. The gate owns no
/// framework object (atomics and an event), so leaving it last is safe.
struct CompletionGate {
    active: AtomicUsize,
    /// Close is waiting: the last routine out signals `idle` (otherwise nobody needs it).
    waiting: AtomicBool,
    idle: Event,
}

impl CompletionGate {
    fn enter(&self) {
        self.active.fetch_add(1, Ordering::SeqCst);
    }

    fn exit(&self) {
        // Sequentially consistent with `wait_idle`: either it sees this decrement, or this
        // sees its flag and signals.
        if self.active.fetch_sub(1, Ordering::SeqCst) == 1 && self.waiting.load(Ordering::SeqCst) {
            self.idle.set();
        }
    }

    /// Waits (`PASSIVE_LEVEL`) until no completion routine is running. Called by close once
    /// every module reference was released: no new completion routine can start then.
    fn wait_idle(&self) {
        self.waiting.store(true, Ordering::SeqCst);
        loop {
            self.idle.clear();
            if self.active.load(Ordering::SeqCst) == 0 {
                break;
            }
            self.idle.wait();
        }
        self.waiting.store(false, Ordering::SeqCst);
    }
}

/// A completed send waiting for a loop: the slot (`Completing`) and its completion.
type Listed = (Arc<StreamSlot>, Completion);

/// A completed send a loop took: what the slot held, and the module's state then.
struct Job {
    slot: Arc<StreamSlot>,
    completion: Completion,
    input: Option<PoolBuffer>,
    output: Option<PoolBuffer>,
    reference: Option<HeldReference>,
    /// A stop's cancel may have hit this send although it was meant for an earlier one.
    suspect: bool,
    stopping: bool,
    target: Option<usize>,
}

struct StreamState {
    target: Option<usize>,
    stopping: bool,
    live: usize,
    start_count: u64,
    slots: Vec<SlotState>,
    requests: Vec<Arc<StreamSlot>>,
    /// Completions waiting for a loop: listed while a send was in progress, moved here by
    /// their sender, or left for the work item (a passive-level module's above
    /// `PASSIVE_LEVEL`, or those of a loop that spent its budget). Room for every slot is
    /// reserved at open; a slot is in it at most once (it stays `Completing` until taken).
    ready: VecDeque<Listed>,
    /// Sends in progress: from committing a send to the section after `WdfRequestSend`
    /// returned.
    in_send: usize,
    work_item: Option<WorkItem>,
    /// Streaming was on when `D0Exit` stopped it.
    resume_in_d0: bool,
    /// `D0Exit` purged the target.
    purged: bool,
}

impl StreamState {
    /// Takes a completed slot's buffers and reference for a loop.
    fn take(&mut self, (slot, completion): Listed) -> Job {
        let (stopping, target) = (self.stopping, self.target);
        let mut job = Job {
            slot,
            completion,
            input: None,
            output: None,
            reference: None,
            suspect: false,
            stopping: true,
            target: None,
        };
        if let Some(s) = self.slots.get_mut(job.slot.index) {
            s.cancel_pending = false;
            job.suspect = s.suspect_seq == s.seq;
            s.suspect_seq = 0;
            job.input = s.input.take();
            job.output = s.output.take();
            job.reference = s.reference.take();
            job.stopping = stopping;
            job.target = target;
        }
        job
    }

    /// The oldest listed completion for a loop that may process one; otherwise the list is left
    /// to the work item.
    fn next_job(&mut self, may_process: bool) -> Option<Job> {
        if !may_process {
            if !self.ready.is_empty()
                && let Some(item) = &self.work_item
            {
                // Enqueued under the lock: close cannot delete the item meanwhile (and the
                // listed slots' references keep close waiting until the item took them).
                item.enqueue();
            }
            return None;
        }
        let listed = self.ready.pop_front()?;
        Some(self.take(listed))
    }
}

/// What the streaming side of a `ContinuousRequestTarget` shares with its completions.
pub(crate) struct StreamShared {
    state: SpinLock<StreamState>,
    references: ReferenceSource,
    parent: usize,
    count: usize,
    request_type: RequestType,
    ioctl: u32,
    passive: bool,
    pub(crate) input_pool: Option<BufferPool>,
    pub(crate) output_pool: Option<BufferPool>,
    input_callback: Option<BufferInputCallback>,
    output_callback: Option<BufferOutputCallback>,
    ended: Event,
    gate: Arc<CompletionGate>,
    /// `stopping`, readable without the lock (written with it): a resend looks at it before it
    /// fills an input buffer.
    stopping_hint: AtomicBool,
}

/// Settings of the streaming side, taken from the module's configuration.
pub(crate) struct StreamSettings {
    pub(crate) count: usize,
    pub(crate) request_type: RequestType,
    pub(crate) ioctl: u32,
    pub(crate) passive: bool,
    pub(crate) input_pool: Option<BufferPool>,
    pub(crate) output_pool: Option<BufferPool>,
    pub(crate) input_callback: Option<BufferInputCallback>,
    pub(crate) output_callback: Option<BufferOutputCallback>,
}

impl SharedCompletion for StreamSlot {
    fn completed(self: Arc<Self>, completion: &Completion) {
        // The send's reference is still in the slot: close has not passed its reference wait,
        // so it will wait for this gate too.
        let gate = Arc::clone(&self.gate);
        gate.enter();
        if self.record_early(completion) {
            // Its send has not returned yet: the sender lists it (no need for the shared
            // state here).
            drop(self);
        } else if let Some(shared) = self.shared.upgrade() {
            shared.completed(self, *completion);
            drop(shared);
        } else {
            drop(self);
        }
        // Nothing of the module is held any more.
        gate.exit();
    }
}

impl StreamShared {
    pub(crate) fn new(
        references: ReferenceSource,
        parent: WDFOBJECT,
        settings: StreamSettings,
    ) -> Result<Arc<Self>, NtStatus> {
        Ok(Arc::new(Self {
            state: SpinLock::create(StreamState {
                target: None,
                stopping: true,
                live: 0,
                start_count: 0,
                slots: Vec::new(),
                requests: Vec::new(),
                ready: VecDeque::new(),
                in_send: 0,
                work_item: None,
                resume_in_d0: false,
                purged: false,
            })?,
            references,
            parent: parent as usize,
            count: settings.count,
            request_type: settings.request_type,
            ioctl: settings.ioctl,
            passive: settings.passive,
            input_pool: settings.input_pool,
            output_pool: settings.output_pool,
            input_callback: settings.input_callback,
            output_callback: settings.output_callback,
            ended: Event::new(EventKind::Notification, false),
            gate: Arc::new(CompletionGate {
                active: AtomicUsize::new(0),
                waiting: AtomicBool::new(false),
                idle: Event::new(EventKind::Notification, false),
            }),
            stopping_hint: AtomicBool::new(true),
        }))
    }

    /// Open: creates the N requests and the work item. Nothing is kept on failure.
    pub(crate) fn open(self: &Arc<Self>) -> Result<(), NtStatus> {
        let mut requests = Vec::new();
        let mut slots = Vec::new();
        let mut ready = VecDeque::new();
        requests
            .try_reserve_exact(self.count)
            .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        slots
            .try_reserve_exact(self.count)
            .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        ready
            .try_reserve_exact(self.count)
            .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        for index in 0..self.count {
            let request = Request::create(None, Some(self.parent as WDFOBJECT))?;
            requests.push(Arc::new(StreamSlot {
                index,
                request,
                shared: Arc::downgrade(self),
                gate: Arc::clone(&self.gate),
                send: AtomicU8::new(SEND_NONE),
                early_status: AtomicI32::new(0),
                early_information: AtomicUsize::new(0),
                early_ioctl: AtomicU32::new(0),
            }));
            slots.push(SlotState {
                phase: Phase::Idle,
                seq: 0,
                cancel_pending: false,
                reserved: false,
                stream_start: 0,
                suspect_seq: 0,
                early: None,
                input: None,
                output: None,
                reference: None,
            });
        }
        let weak = Arc::downgrade(self);
        let work_item = WorkItem::new(self.parent as WDFOBJECT, move || {
            if let Some(shared) = weak.upgrade() {
                shared.drain();
            }
        })?;
        let mut state = self.state.lock();
        state.requests = requests;
        state.slots = slots;
        state.ready = ready;
        state.in_send = 0;
        state.work_item = Some(work_item);
        state.stopping = true;
        self.stopping_hint.store(true, Ordering::Release);
        state.live = 0;
        Ok(())
    }

    /// Close: every stream has ended (each send held a module reference, and the last one was
    /// released in the section that ended its stream). Deletes the requests and the work item.
    pub(crate) fn close(&self) {
        // Completion routines that released their last reference may still be returning.
        self.gate.wait_idle();
        let (requests, item, ready) = {
            let mut state = self.state.lock();
            state.target = None;
            state.slots.clear();
            (
                core::mem::take(&mut state.requests),
                state.work_item.take(),
                core::mem::take(&mut state.ready),
            )
        };
        debug_assert!(ready.is_empty(), "a listed completion holds a reference");
        drop(ready);
        drop(requests);
        drop(item);
    }

    /// Whether a loop with `budget` left may process a completion here (a passive-level module
    /// processes them at `PASSIVE_LEVEL` only).
    fn may_process(&self, budget: usize) -> bool {
        budget > 0 && (!self.passive || irql::current() == irql::PASSIVE_LEVEL)
    }

    /// The work item: processes listed completions within one budget, then queues itself again
    /// if some are left.
    fn drain(&self) {
        let mut budget = LOOP_BUDGET;
        loop {
            let may = self.may_process(budget);
            let job = self.state.lock().next_job(may);
            if job.is_none() {
                return;
            }
            self.run(job, &mut budget);
        }
    }

    pub(crate) fn target(&self) -> Option<IoTarget> {
        self.state
            .lock()
            .target
            .map(|handle| IoTarget::borrowed(handle as WDFIOTARGET))
    }

    pub(crate) fn set_target(&self, target: Option<&IoTarget>) {
        self.state.lock().target = target.map(|t| t.handle() as usize);
    }

    /// Whether any stream is live.
    pub(crate) fn is_streaming(&self) -> bool {
        self.state.lock().live > 0
    }

    /// Live streams.
    pub(crate) fn live_streams(&self) -> usize {
        self.state.lock().live
    }

    /// Ends the stream of slot `index`. The send's reference (if any) is released in the same
    /// lock section, so whoever sees the slot idle sees the reference gone, and nothing touches
    /// the slot once close could run.
    fn end_stream(&self, index: usize, reference: Option<HeldReference>) {
        {
            let mut state = self.state.lock();
            if let Some(slot) = state.slots.get_mut(index) {
                slot.phase = Phase::Idle;
                slot.early = None;
            }
            state.live = state.live.saturating_sub(1);
            drop(reference);
        }
        self.ended.set();
    }

    /// The completion routine of every streaming send (at the IRQL of whoever completed it).
    /// (A completion whose send has not returned yet was recorded in its slot by the
    /// trampoline, without the lock: its sender lists it.)
    fn completed(&self, slot: Arc<StreamSlot>, completion: Completion) {
        let may = self.may_process(LOOP_BUDGET);
        let job = {
            let mut state = self.state.lock();
            let in_send = state.in_send;
            let Some(s) = state.slots.get_mut(slot.index) else {
                return;
            };
            if s.phase == Phase::Sending {
                // Its sender's section after the send has not run yet, but the send word said
                // otherwise: not expected (the word is pending from the commit section to
                // that one); recorded the locked way all the same.
                s.early = Some(completion);
                return;
            }
            debug_assert_eq!(
                s.phase,
                Phase::InFlight,
                "a completion of a request not out"
            );
            s.phase = Phase::Completing;
            // Room for every slot was reserved at open: this never allocates.
            state.ready.push_back((slot, completion));
            if in_send > 0 {
                // Maybe inside one of this module's sends (a queue completing a request it
                // held while presenting another): that sender takes it once its send returned.
                return;
            }
            state.next_job(may)
        };
        let mut budget = LOOP_BUDGET;
        self.run(job, &mut budget);
    }

    /// The loop: processes `job` and whatever the sends it makes bring back (their own early
    /// completions, completions listed meanwhile), one unit of `budget` per completion, until
    /// none is left or the work item takes over.
    fn run(&self, mut job: Option<Job>, budget: &mut usize) {
        while let Some(current) = job.take() {
            *budget = budget.saturating_sub(1);
            job = self.process(current, *budget);
        }
    }

    /// The oldest listed completion, if a loop with `budget` left may process it.
    fn next_job(&self, budget: usize) -> Option<Job> {
        let may = self.may_process(budget);
        self.state.lock().next_job(may)
    }

    /// Processes one completed streaming send: buffers back to their pools or to the client,
    /// the output callback, the resend. Returns the next completion for the loop.
    fn process(&self, job: Job, budget: usize) -> Option<Job> {
        let Job {
            slot,
            completion,
            input,
            output,
            reference,
            suspect,
            stopping,
            target,
        } = job;
        let (resend, output) = if stopping || (suspect && completion.status == NtStatus::CANCELLED)
        {
            // Stopping: the data is dropped and the client is not called (as in DMF). A cancel
            // that was meant for an earlier send of this slot is not the client's business.
            drop(output);
            (true, None)
        } else {
            let mut output = output.map(|buffer| OutputBuffer::new(buffer, completion.information));
            let disposition = match &self.output_callback {
                Some(callback) => callback(&mut output, completion.status),
                None if completion.status.is_success() => {
                    BufferDisposition::ContinuousRequestTargetAndContinueStreaming
                }
                None => BufferDisposition::ContinuousRequestTargetAndStopStreaming,
            };
            let resend = disposition.continues_streaming();
            // A buffer the client did not take stays with the request for its resend (DMF
            // puts it back into the pool and gets one again: the same, zeroed, buffer here,
            // without the two pool lock sections); otherwise it goes back to its pool.
            let kept = if resend {
                output.map(OutputBuffer::into_buffer)
            } else {
                drop(output);
                None
            };
            (resend, kept)
        };
        if !resend {
            // Back to their pools before the reference goes.
            drop((input, output));
            self.end_stream(slot.index, reference);
            return self.next_job(budget);
        }
        // The resend ends the stream itself if the module is stopping, closing or out of
        // buffers. The input buffer is reused too (zeroed, then filled again), as DMF would
        // put it back and get one.
        let kept = Kept { input, output };
        match self.send_slot(&slot, reference, kept, stopping, target, budget) {
            Ok(next) => next,
            Err(_) => self.next_job(budget),
        }
    }

    /// Sends one slot's request with fresh buffers. `previous` is the reference of the send
    /// that just completed, released once the new one is taken; `stopping` and `target` are
    /// what the module said when the slot was taken (the target is checked again when the send
    /// commits; a stop since then cancels the request once sent).
    /// `Ok`: the send returned, with the next listed completion for the loop (this send's own,
    /// if it completed already and nothing was listed before it). `Err`: the stream ended; the
    /// list was not looked at.
    fn send_slot(
        &self,
        slot: &Arc<StreamSlot>,
        previous: Option<HeldReference>,
        kept: Kept,
        stopping: bool,
        target: Option<usize>,
        budget: usize,
    ) -> Result<Option<Job>, NtStatus> {
        let index = slot.index;
        let acquired = match previous {
            // Handed on to the resend while the module is open (as good as a new one).
            Some(previous) if previous.module_open() => Ok(previous),
            previous => self
                .references
                .acquire()
                .map_err(|status| (status, previous)),
        };
        let reference = match acquired {
            Ok(reference) => reference,
            Err((status, previous)) => {
                // Buffers back to their pools before the reference goes.
                drop(kept);
                self.end_stream(index, previous);
                return Err(status);
            }
        };
        // A stop since the slot was taken (during the output callback, say): no input is filled
        // for a send that would be cancelled. (One that lands later cancels it once sent.)
        let stopping = stopping || self.stopping_hint.load(Ordering::Acquire);
        let target = match (stopping, target) {
            (true, _) => Err(NtStatus::CANCELLED),
            (false, None) => Err(NO_TARGET),
            (false, Some(target)) => Ok(target),
        };
        let target = match target {
            Ok(target) => target,
            Err(status) => {
                drop(kept);
                self.end_stream(index, Some(reference));
                return Err(status);
            }
        };
        let io_target = IoTarget::borrowed(target as WDFIOTARGET);
        let (input, output) = match self.prepare(&slot.request, &io_target, kept) {
            Ok(buffers) => buffers,
            // Buffers already taken went back to their pools when dropped.
            Err(status) => {
                self.end_stream(index, Some(reference));
                return Err(status);
            }
        };
        if let Err((status, reference)) = self.commit(slot, target, input, output, reference) {
            self.end_stream(index, Some(reference));
            return Err(status);
        }
        if let Err(status) =
            slot.request
                .send_shared(&io_target, Timeout::from_millis(0), Arc::clone(slot))
        {
            // Refused: no completion will run. (What was listed meanwhile is the caller's to
            // take: a failed send is followed by a look at the list.)
            let (input, output, reference) = {
                let mut state = self.state.lock();
                slot.send.store(SEND_NONE, Ordering::Release);
                state.in_send -= 1;
                state.slots.get_mut(index).map_or((None, None, None), |s| {
                    (s.input.take(), s.output.take(), s.reference.take())
                })
            };
            drop((input, output));
            self.end_stream(index, reference);
            return Err(status);
        }
        Ok(self.after_send(slot, budget))
    }

    /// Commits a send: the slot goes `Sending` with its buffers and reference, as one more send
    /// in progress. Fails (giving the reference back; the buffers go back to their pools) if
    /// the target was cleared or changed since the slot was taken.
    fn commit(
        &self,
        slot: &StreamSlot,
        target: usize,
        input: Option<PoolBuffer>,
        output: Option<PoolBuffer>,
        reference: HeldReference,
    ) -> Result<(), (NtStatus, HeldReference)> {
        let refused = {
            let mut state = self.state.lock();
            let (start, stopping) = (state.start_count, state.stopping);
            let same_target = state.target == Some(target);
            match state.slots.get_mut(slot.index) {
                Some(s) if same_target => {
                    s.seq += 1;
                    s.phase = Phase::Sending;
                    // A stop that came while the input was being filled does not waste it:
                    // the request goes out and is cancelled right after the send (as when the
                    // stop finds it `Sending`).
                    s.cancel_pending = stopping;
                    s.early = None;
                    slot.send.store(SEND_PENDING, Ordering::Release);
                    s.stream_start = start;
                    // Stored before the send: the completion may run before it returns.
                    s.input = input;
                    s.output = output;
                    s.reference = Some(reference);
                    state.in_send += 1;
                    return Ok(());
                }
                Some(_) => (NO_TARGET, input, output, reference),
                None => (NtStatus::INVALID_DEVICE_STATE, input, output, reference),
            }
        };
        let (status, input, output, reference) = refused;
        drop((input, output));
        Err((status, reference))
    }

    /// The section after a send returned: until it the slot stays `Sending`, so its reference
    /// is still in it, whatever a completion did meanwhile; after it the slot is someone else's
    /// business (its completion routine's, or whichever loop takes it off the list). Lists the
    /// slot's early completion, if any, and takes the oldest listed one for the loop.
    fn after_send(&self, slot: &Arc<StreamSlot>, budget: usize) -> Option<Job> {
        let may = self.may_process(budget);
        let (next, cancel) = {
            let mut state = self.state.lock();
            state.in_send -= 1;
            let mut cancel = false;
            let mut listed = None;
            if let Some(s) = state.slots.get_mut(slot.index) {
                debug_assert_eq!(s.phase, Phase::Sending);
                if let Some(completion) = slot.take_early().or_else(|| s.early.take()) {
                    s.phase = Phase::Completing;
                    listed = Some((Arc::clone(slot), completion));
                } else {
                    s.phase = Phase::InFlight;
                    cancel = core::mem::take(&mut s.cancel_pending);
                }
            }
            let next = match listed {
                // Nothing listed before it: processed next, without going through the list.
                Some(listed) if may && state.ready.is_empty() => Some(state.take(listed)),
                Some(listed) => {
                    // Behind what was listed before: first come, first served.
                    state.ready.push_back(listed);
                    state.next_job(may)
                }
                None => state.next_job(may),
            };
            (next, cancel)
        };
        if cancel {
            let _ = slot.request.cancel();
        }
        next
    }

    /// Reuses and formats the request with fresh buffers (the input filled by the client):
    /// those `kept` from the slot's last send, zeroed as their pool would, else from the pools.
    /// On failure every buffer has gone back to its pool when this returns.
    fn prepare(
        &self,
        request: &Request,
        target: &IoTarget,
        kept: Kept,
    ) -> Result<(Option<PoolBuffer>, Option<PoolBuffer>), NtStatus> {
        let Kept {
            input: kept_input,
            output: kept_output,
        } = kept;
        request.reuse(NtStatus::SUCCESS)?;
        let mut input_range = None;
        let input = match &self.input_pool {
            Some(pool) => {
                let mut buffer = match kept_input {
                    Some(buffer) => zeroed(buffer),
                    None => pool.get()?,
                };
                let size = buffer.len();
                let used = match &self.input_callback {
                    Some(callback) => {
                        let (data, context) = buffer.parts_mut();
                        callback(data, context)
                    }
                    None => size,
                };
                input_range = Some(if used == 0 || used >= size {
                    MemoryRange::whole(buffer.memory().handle())
                } else {
                    MemoryRange::part(buffer.memory().handle(), 0, used)
                });
                Some(buffer)
            }
            None => None,
        };
        let output = match (&self.output_pool, kept_output) {
            (Some(_), Some(buffer)) => Some(zeroed(buffer)),
            (Some(pool), None) => Some(pool.get()?),
            (None, _) => None,
        };
        let output_range = output
            .as_ref()
            .map(|buffer| MemoryRange::whole(buffer.memory().handle()));
        match self.request_type {
            RequestType::Read => {
                request.format_read(target, output_range.ok_or(NtStatus::INVALID_PARAMETER)?)?;
            }
            RequestType::Write => {
                request.format_write(target, input_range.ok_or(NtStatus::INVALID_PARAMETER)?)?;
            }
            RequestType::Ioctl | RequestType::InternalIoctl => request.format_ioctl(
                target,
                self.ioctl,
                self.request_type == RequestType::InternalIoctl,
                input_range,
                output_range,
            )?,
        }
        Ok((input, output))
    }

    /// Starts streaming every idle slot. On a send failure streaming is stopped and the first
    /// failure returned. Completions that arrive while these sends are in progress are
    /// processed here, in the loop (within one budget; the work item takes over beyond it).
    pub(crate) fn start(&self) -> Result<(), NtStatus> {
        {
            let mut state = self.state.lock();
            if state.target.is_none() {
                return Err(NO_TARGET);
            }
            state.stopping = false;
            self.stopping_hint.store(false, Ordering::Release);
            state.start_count += 1;
            let start = state.start_count;
            let mut reserved = 0;
            for s in &mut state.slots {
                if s.phase == Phase::Idle {
                    s.phase = Phase::Sending;
                    s.reserved = true;
                    s.stream_start = start;
                    reserved += 1;
                }
            }
            state.live += reserved;
        }
        let mut result = Ok(());
        let mut budget = LOOP_BUDGET;
        for index in 0..self.count {
            let reserved = {
                let mut state = self.state.lock();
                let (stopping, target) = (state.stopping, state.target);
                let Some(s) = state.slots.get_mut(index) else {
                    break;
                };
                if !core::mem::take(&mut s.reserved) {
                    continue;
                }
                state
                    .requests
                    .get(index)
                    .map(|slot| (Arc::clone(slot), stopping, target))
            };
            let Some((slot, stopping, target)) = reserved else {
                break;
            };
            if result.is_err() {
                // An earlier send failed: the rest of the reserved streams end unsent.
                self.end_stream(index, None);
                continue;
            }
            let next = match self.send_slot(&slot, None, Kept::default(), stopping, target, budget)
            {
                Ok(next) => next,
                Err(status) => {
                    result = Err(status);
                    self.next_job(budget)
                }
            };
            self.run(next, &mut budget);
        }
        if result.is_err() {
            self.stop();
        }
        result
    }

    /// Marks the module stopping and cancels what is in flight; does not wait.
    pub(crate) fn stop(&self) {
        {
            let mut state = self.state.lock();
            state.stopping = true;
            self.stopping_hint.store(true, Ordering::Release);
        }
        for index in 0..self.count {
            let in_flight = {
                let mut state = self.state.lock();
                let Some(s) = state.slots.get_mut(index) else {
                    break;
                };
                let seq = match s.phase {
                    Phase::InFlight => Some(s.seq),
                    Phase::Sending => {
                        s.cancel_pending = true;
                        None
                    }
                    Phase::Idle | Phase::Completing => None,
                };
                seq.and_then(|seq| state.requests.get(index).map(|r| (seq, Arc::clone(r))))
            };
            let Some((seq, slot)) = in_flight else {
                continue;
            };
            // Outside the lock: the cancel may complete the request right here.
            let _ = slot.request.cancel();
            let mut state = self.state.lock();
            if let Some(s) = state.slots.get_mut(index)
                && s.seq != seq
                && s.phase != Phase::Idle
            {
                // The request completed and was sent again before the cancel: the cancel may
                // have hit the new send.
                s.suspect_seq = s.seq;
            }
        }
        self.ended.set();
    }

    /// Stops and waits (`PASSIVE_LEVEL`) until every stream live at the stop has ended (or was
    /// restarted by a later `start`).
    pub(crate) fn stop_and_wait(&self) {
        self.stop();
        let stop_point = self.state.lock().start_count;
        loop {
            self.ended.clear();
            let done = {
                let state = self.state.lock();
                state
                    .slots
                    .iter()
                    .all(|s| s.phase == Phase::Idle || s.stream_start > stop_point)
            };
            if done {
                return;
            }
            let _ = self.ended.wait_timeout(Duration::from_millis(10));
        }
    }

    /// `D0Exit`: stop streaming (remembering whether it was on), then purge the target.
    pub(crate) fn d0_exit(&self) {
        let Some(target) = self.target() else {
            return;
        };
        let streaming = {
            let state = self.state.lock();
            !state.stopping && state.live > 0
        };
        self.stop_and_wait();
        target.purge(true);
        let mut state = self.state.lock();
        state.resume_in_d0 = streaming;
        state.purged = true;
    }

    /// `D0Entry`: restart the purged target first, then streaming if `D0Exit` stopped it.
    pub(crate) fn d0_entry(&self) -> Result<(), NtStatus> {
        let (purged, resume) = {
            let mut state = self.state.lock();
            (
                core::mem::take(&mut state.purged),
                core::mem::take(&mut state.resume_in_d0),
            )
        };
        if purged && let Some(target) = self.target() {
            target.start()?;
        }
        if resume && self.target().is_some() {
            self.start()?;
        }
        Ok(())
    }
}
