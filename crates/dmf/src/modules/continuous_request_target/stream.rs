//! The streaming machinery: N requests created at open, each re-armed on completion with fresh
//! buffers from the module's pools, until streaming stops.
//!
//! Each slot has a phase, changed under the state lock:
//!
//! ```text
//! Idle --start/resend--> Sending --send returned--> InFlight --completed--> Completing --+--> Sending (resend)
//!   ^                       |                                                ^           |
//!   |                       +---- completed before the send returned --------+           |
//!   +------------------------------------ stream ends -----------------------------------+
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
//!   this thread or another one) only records itself in the slot (`early`);
//! * a completion of another slot that arrives while any send of this module is in progress
//!   (`in_send`) goes to the `ready` list;
//!
//! and returns. Every sender, in the section where its send has returned, moves its own early
//! completion to `ready` and takes the oldest ready completion to process next: the sending
//! code is a loop that goes on while there is work. Whoever is mid-send when a completion is
//! listed will look at the list afterwards, and a loop only ends having found it empty, so no
//! completion is left behind. On one thread, completion routines of this module nest at most
//! two deep: the one whose loop sends, and the one inside that send.
//!
//! A loop processes at most [`LOOP_BUDGET`] completions, then hands what is left to the module's
//! work item (which loops the same way and re-queues itself), so a target that always
//! completes inline holds no thread for ever: not the caller of `start`, not a DPC.
//!
//! # References and lifetime
//!
//! Every send holds a module reference, kept in its slot from just before `WdfRequestSend`
//! until its completion has been processed; it is handed on to the next send of the slot, or
//! released in the very lock section that ends the stream. While a slot is `Sending` nothing
//! but its sender releases that reference (an early completion leaves it in the slot), and a
//! listed completion is processed by exactly one loop, which takes it off the list. So the state
//! of a slot is only touched while the reference of its current send is held, or in the section
//! that releases it: close, which waits for every reference, never clears the slots under a
//! running send.
//!
//! A stop marks the module stopping, cancels every `InFlight` request and asks every `Sending`
//! one to cancel itself once sent; a slot whose stream ends goes `Idle` and signals `ended`.

use alloc::collections::VecDeque;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
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
/// before it hands the rest to the work item.
pub(crate) const LOOP_BUDGET: usize = 32;

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
    /// processes it.
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
}

struct StreamState {
    target: Option<usize>,
    stopping: bool,
    live: usize,
    start_count: u64,
    slots: Vec<SlotState>,
    requests: Vec<Arc<StreamSlot>>,
    /// Completions waiting to be processed by a loop: listed while a send was in progress,
    /// moved here by their sender, or left for the work item (a passive-level module's above
    /// `PASSIVE_LEVEL`, or those of a loop that spent its budget). Room for every slot is
    /// reserved at open; a slot is in it at most once (it stays `Completing` until taken).
    ready: VecDeque<Work>,
    /// Sends in progress: between storing the slot's buffers and the section after
    /// `WdfRequestSend` returned.
    in_send: usize,
    work_item: Option<WorkItem>,
    /// Streaming was on when `D0Exit` stopped it.
    resume_in_d0: bool,
    /// `D0Exit` purged the target.
    purged: bool,
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

/// A completed send to process: the slot (`Completing`) and its completion.
type Work = (Arc<StreamSlot>, Completion);

/// What processing a completion decided.
enum Next {
    /// Send the request again; the reference of the send that completed comes along.
    Resend(Option<HeldReference>),
    /// The stream ended.
    Ended,
}

impl SharedCompletion for StreamSlot {
    fn completed(self: Arc<Self>, completion: &Completion) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        shared.completed(&self, *completion);
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
        state.live = 0;
        Ok(())
    }

    /// Close: every stream has ended (each send held a module reference, and the last one was
    /// released in the section that ended its stream). Deletes the requests and the work item.
    pub(crate) fn close(&self) {
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

    /// The work item: processes ready completions, within one budget, then queues itself again
    /// if some are left.
    fn drain(&self) {
        let mut budget = LOOP_BUDGET;
        loop {
            let next = {
                let mut state = self.state.lock();
                if budget == 0 {
                    if !state.ready.is_empty()
                        && let Some(item) = &state.work_item
                    {
                        item.enqueue();
                    }
                    return;
                }
                state.ready.pop_front()
            };
            if next.is_none() {
                return;
            }
            self.run(next, &mut budget);
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
    fn completed(&self, slot: &Arc<StreamSlot>, completion: Completion) {
        {
            let mut state = self.state.lock();
            let in_send = state.in_send;
            let Some(s) = state.slots.get_mut(slot.index) else {
                return;
            };
            if s.phase == Phase::Sending {
                // The send of this request has not returned yet (inline completion, or a
                // completion on another thread racing the return): its sender processes it.
                s.early = Some(completion);
                return;
            }
            debug_assert_eq!(
                s.phase,
                Phase::InFlight,
                "a completion of a request not out"
            );
            s.phase = Phase::Completing;
            if in_send > 0 {
                // Maybe inside one of this module's sends (a queue that completes a request it
                // held while presenting another): the sender takes it once its send returned.
                // Room for every slot was reserved at open: this never allocates.
                state.ready.push_back((Arc::clone(slot), completion));
                return;
            }
        }
        let mut budget = LOOP_BUDGET;
        self.run(Some((Arc::clone(slot), completion)), &mut budget);
    }

    /// The loop: processes `work` and whatever the sends it makes bring back (their own early
    /// completions, completions listed meanwhile), one unit of `budget` per completion, until
    /// none is left. Out of budget, or above `PASSIVE_LEVEL` in a passive-level module, the work
    /// goes to the work item instead.
    fn run(&self, mut work: Option<Work>, budget: &mut usize) {
        while let Some((slot, completion)) = work.take() {
            if *budget == 0 || (self.passive && irql::current() != irql::PASSIVE_LEVEL) {
                self.defer(slot, completion);
                return;
            }
            *budget -= 1;
            work = match self.process(slot.index, &completion) {
                Next::Resend(reference) => match self.send_slot(&slot, reference) {
                    Ok(next) => next,
                    Err(_) => self.take_ready(),
                },
                Next::Ended => self.take_ready(),
            };
        }
    }

    /// The oldest listed completion, if any.
    fn take_ready(&self) -> Option<Work> {
        self.state.lock().ready.pop_front()
    }

    /// Lists a completed slot for the work item and queues the work item (which takes every
    /// listed completion).
    fn defer(&self, slot: Arc<StreamSlot>, completion: Completion) {
        let mut state = self.state.lock();
        // Room for every slot was reserved at open and a slot is listed at most once (it stays
        // `Completing` until taken): this never allocates.
        state.ready.push_back((slot, completion));
        // Enqueued under the lock: close cannot delete the item meanwhile (and the slot's
        // reference keeps close waiting until the item processed it).
        if let Some(item) = &state.work_item {
            item.enqueue();
        }
    }

    /// Processes one completed streaming send: buffers back to their pools or to the client,
    /// the output callback, and whether the request streams on.
    fn process(&self, index: usize, completion: &Completion) -> Next {
        let taken = {
            let mut state = self.state.lock();
            let stopping = state.stopping;
            state.slots.get_mut(index).map(|s| {
                s.cancel_pending = false;
                let suspect = s.suspect_seq == s.seq;
                s.suspect_seq = 0;
                (
                    s.input.take(),
                    s.output.take(),
                    s.reference.take(),
                    stopping,
                    suspect,
                )
            })
        };
        let Some((input, output, reference, stopping, suspect)) = taken else {
            return Next::Ended;
        };
        // The input buffer always goes back to its pool.
        drop(input);
        let resend = if stopping || (suspect && completion.status == NtStatus::CANCELLED) {
            // Stopping: the data is dropped and the client is not called (as in DMF). A cancel
            // that was meant for an earlier send of this slot is not the client's business.
            drop(output);
            true
        } else {
            let mut output = output.map(|buffer| OutputBuffer::new(buffer, completion.information));
            let disposition = match &self.output_callback {
                Some(callback) => callback(&mut output, completion.status),
                None if completion.status.is_success() => {
                    BufferDisposition::ContinuousRequestTargetAndContinueStreaming
                }
                None => BufferDisposition::ContinuousRequestTargetAndStopStreaming,
            };
            // A buffer the client did not take goes back to its pool.
            drop(output);
            disposition.continues_streaming()
        };
        if resend {
            // The resend ends the stream itself if the module is stopping, closing or out of
            // buffers.
            Next::Resend(reference)
        } else {
            self.end_stream(index, reference);
            Next::Ended
        }
    }

    /// Sends one slot's request with fresh buffers. `previous` is the reference of the send
    /// that just completed, released once the new one is taken. `Ok`: the send returned, and the
    /// next listed completion (this send's own, if it completed already and nothing was listed
    /// before it) is the caller's to process. `Err`: the stream ended; the list is unchecked.
    fn send_slot(
        &self,
        slot: &Arc<StreamSlot>,
        previous: Option<HeldReference>,
    ) -> Result<Option<Work>, NtStatus> {
        let index = slot.index;
        let reference = match self.references.acquire() {
            Ok(reference) => {
                drop(previous);
                reference
            }
            Err(status) => {
                self.end_stream(index, previous);
                return Err(status);
            }
        };
        let reserved = {
            let mut state = self.state.lock();
            let start = state.start_count;
            match (state.stopping, state.target) {
                (true, _) => Err(NtStatus::CANCELLED),
                (false, None) => Err(NO_TARGET),
                (false, Some(target)) => match state.slots.get_mut(index) {
                    Some(s) => {
                        s.seq += 1;
                        s.phase = Phase::Sending;
                        s.cancel_pending = false;
                        s.early = None;
                        s.stream_start = start;
                        Ok(IoTarget::borrowed(target as WDFIOTARGET))
                    }
                    None => Err(NtStatus::INVALID_DEVICE_STATE),
                },
            }
        };
        let target = match reserved {
            Ok(target) => target,
            Err(status) => {
                self.end_stream(index, Some(reference));
                return Err(status);
            }
        };
        if let Err((status, reference)) = self.format_and_send(slot, &target, reference) {
            self.end_stream(index, reference);
            return Err(status);
        }
        // The send returned. Until this section the slot stays `Sending`, so its reference is
        // still in it, whatever a completion did meanwhile. After it the slot is someone
        // else's business (its completion routine's, or whichever loop takes it off the list).
        let (next, cancel) = {
            let mut state = self.state.lock();
            state.in_send -= 1;
            let mut cancel = false;
            if let Some(s) = state.slots.get_mut(index) {
                debug_assert_eq!(s.phase, Phase::Sending);
                if let Some(completion) = s.early.take() {
                    s.phase = Phase::Completing;
                    // Behind what was listed before: first come, first served.
                    state.ready.push_back((Arc::clone(slot), completion));
                } else {
                    s.phase = Phase::InFlight;
                    cancel = core::mem::take(&mut s.cancel_pending);
                }
            }
            (state.ready.pop_front(), cancel)
        };
        if cancel {
            let _ = slot.request.cancel();
        }
        Ok(next)
    }

    /// Reuses and formats the request with fresh buffers (the input filled by the client).
    fn prepare(
        &self,
        request: &Request,
        target: &IoTarget,
    ) -> Result<(Option<PoolBuffer>, Option<PoolBuffer>), NtStatus> {
        request.reuse(NtStatus::SUCCESS)?;
        let mut input_range = None;
        let input = match &self.input_pool {
            Some(pool) => {
                let mut buffer = pool.get()?;
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
        let output = match &self.output_pool {
            Some(pool) => Some(pool.get()?),
            None => None,
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

    /// Formats and sends; on failure nothing is out and the reference comes back.
    fn format_and_send(
        &self,
        slot: &Arc<StreamSlot>,
        target: &IoTarget,
        reference: HeldReference,
    ) -> Result<(), (NtStatus, Option<HeldReference>)> {
        let request = &slot.request;
        let (input, output) = match self.prepare(request, target) {
            Ok(buffers) => buffers,
            // Buffers already taken went back to their pools when dropped.
            Err(status) => return Err((status, Some(reference))),
        };
        {
            // Stored before the send: the completion may run before `send_shared` returns.
            let mut state = self.state.lock();
            let Some(s) = state.slots.get_mut(slot.index) else {
                drop(state);
                drop((input, output));
                return Err((NtStatus::INVALID_DEVICE_STATE, Some(reference)));
            };
            s.input = input;
            s.output = output;
            s.reference = Some(reference);
            state.in_send += 1;
        }
        if let Err(status) = request.send_shared(target, Timeout::from_millis(0), Arc::clone(slot))
        {
            // Refused: no completion will run. (What was listed meanwhile is the caller's to
            // take: a failed send is followed by a look at the list.)
            let (input, output, reference) = {
                let mut state = self.state.lock();
                state.in_send -= 1;
                state
                    .slots
                    .get_mut(slot.index)
                    .map_or((None, None, None), |s| {
                        (s.input.take(), s.output.take(), s.reference.take())
                    })
            };
            drop((input, output));
            return Err((status, reference));
        }
        Ok(())
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
            let slot = {
                let mut state = self.state.lock();
                let Some(s) = state.slots.get_mut(index) else {
                    break;
                };
                if !core::mem::take(&mut s.reserved) {
                    continue;
                }
                state.requests.get(index).map(Arc::clone)
            };
            let Some(slot) = slot else {
                break;
            };
            if result.is_err() {
                // An earlier send failed: the rest of the reserved streams end unsent.
                self.end_stream(index, None);
                continue;
            }
            let next = match self.send_slot(&slot, None) {
                Ok(next) => next,
                Err(status) => {
                    result = Err(status);
                    self.take_ready()
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
        self.state.lock().stopping = true;
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
