//! The streaming machinery: N requests created at open, each re-armed on completion with fresh
//! buffers from the module's pools, until streaming stops.
//!
//! Each slot has a phase, changed under the state lock:
//!
//! ```text
//! Idle --start/resend--> Sending --sent--> InFlight --completed--> Completing --+--> Sending (resend)
//!   ^                                                                          |
//!   +------------------------------ stream ends -------------------------------+
//! ```
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
use crate::wdf::request::{Completion, MemoryRange, Request, SharedCompletion, Timeout};
use crate::wdf::spin_lock::SpinLock;
use crate::wdf::work_item::WorkItem;

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
    passive_queue: VecDeque<(Arc<StreamSlot>, Completion)>,
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

impl SharedCompletion for StreamSlot {
    fn completed(self: Arc<Self>, completion: &Completion) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        if shared.passive {
            let mut state = shared.state.lock();
            // Room for every slot was reserved at open: this never allocates.
            state.passive_queue.push_back((self, *completion));
            if let Some(item) = &state.work_item {
                item.enqueue();
            }
            return;
        }
        shared.process(&self, completion);
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
                passive_queue: VecDeque::new(),
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

    /// Open: creates the N requests (and the passive-level work item). Nothing is kept on
    /// failure.
    pub(crate) fn open(self: &Arc<Self>) -> Result<(), NtStatus> {
        let mut requests = Vec::new();
        let mut slots = Vec::new();
        let mut queue = VecDeque::new();
        requests
            .try_reserve_exact(self.count)
            .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        slots
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
                input: None,
                output: None,
                reference: None,
            });
        }
        let work_item = if self.passive {
            queue
                .try_reserve_exact(self.count)
                .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
            let weak = Arc::downgrade(self);
            Some(WorkItem::new(self.parent as WDFOBJECT, move || {
                if let Some(shared) = weak.upgrade() {
                    shared.drain_passive();
                }
            })?)
        } else {
            None
        };
        let mut state = self.state.lock();
        state.requests = requests;
        state.slots = slots;
        state.passive_queue = queue;
        state.work_item = work_item;
        state.stopping = true;
        state.live = 0;
        Ok(())
    }

    /// Close: every stream has ended (each send held a module reference). Deletes the requests
    /// and the work item.
    pub(crate) fn close(&self) {
        let (requests, item) = {
            let mut state = self.state.lock();
            state.target = None;
            state.slots.clear();
            (core::mem::take(&mut state.requests), state.work_item.take())
        };
        drop(requests);
        drop(item);
    }

    fn drain_passive(&self) {
        loop {
            let next = self.state.lock().passive_queue.pop_front();
            let Some((slot, completion)) = next else {
                return;
            };
            self.process(&slot, &completion);
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

    fn end_stream(&self, index: usize) {
        {
            let mut state = self.state.lock();
            if let Some(slot) = state.slots.get_mut(index) {
                slot.phase = Phase::Idle;
            }
            state.live -= 1;
        }
        self.ended.set();
    }

    /// Processes one completed streaming send (at `DISPATCH_LEVEL` in the completion routine,
    /// or at `PASSIVE_LEVEL` on the work item for a passive-level module).
    fn process(&self, slot: &Arc<StreamSlot>, completion: &Completion) {
        let index = slot.index;
        let (input, output, reference, stopping, suspect) = {
            let mut state = self.state.lock();
            let stopping = state.stopping;
            let Some(s) = state.slots.get_mut(index) else {
                return;
            };
            s.phase = Phase::Completing;
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
            // Ends the stream itself if the module is stopping, closing or out of buffers.
            let _ = self.send_slot(slot, reference);
        } else {
            // Released before the stream counts as ended: a waiter that sees it ended sees no
            // reference left behind.
            drop(reference);
            self.end_stream(index);
        }
    }

    /// Sends one slot's request with fresh buffers; on failure its stream ends. `previous` is
    /// the reference of the send that just completed, released once the new one is taken.
    fn send_slot(
        &self,
        slot: &Arc<StreamSlot>,
        previous: Option<HeldReference>,
    ) -> Result<(), NtStatus> {
        let index = slot.index;
        let acquired = self.references.acquire();
        drop(previous);
        let reference = match acquired {
            Ok(reference) => reference,
            Err(status) => {
                self.end_stream(index);
                return Err(status);
            }
        };
        let reserved = {
            let mut state = self.state.lock();
            let start = state.start_count;
            match (state.stopping, state.target) {
                (true, _) => Err(NtStatus::CANCELLED),
                (false, None) => Err(NO_TARGET),
                (false, Some(target)) => {
                    let s = &mut state.slots[index];
                    s.seq += 1;
                    s.phase = Phase::Sending;
                    s.cancel_pending = false;
                    s.stream_start = start;
                    Ok((IoTarget::borrowed(target as WDFIOTARGET), s.seq))
                }
            }
        };
        let (target, seq) = match reserved {
            Ok(reserved) => reserved,
            Err(status) => {
                drop(reference);
                self.end_stream(index);
                return Err(status);
            }
        };
        if let Err(status) = self.format_and_send(slot, &target, reference) {
            self.end_stream(index);
            return Err(status);
        }
        let cancel = {
            let mut state = self.state.lock();
            let s = &mut state.slots[index];
            if s.seq == seq && s.phase == Phase::Sending {
                s.phase = Phase::InFlight;
                core::mem::take(&mut s.cancel_pending)
            } else {
                false
            }
        };
        if cancel {
            let _ = slot.request.cancel();
        }
        Ok(())
    }

    fn format_and_send(
        &self,
        slot: &Arc<StreamSlot>,
        target: &IoTarget,
        reference: HeldReference,
    ) -> Result<(), NtStatus> {
        let request = &slot.request;
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
        {
            // Stored before the send: the completion may run before `send_shared` returns.
            let mut state = self.state.lock();
            let s = &mut state.slots[slot.index];
            s.input = input;
            s.output = output;
            s.reference = Some(reference);
        }
        if let Err(status) = request.send_shared(target, Timeout::from_millis(0), Arc::clone(slot))
        {
            let (input, output, reference) = {
                let mut state = self.state.lock();
                let s = &mut state.slots[slot.index];
                (s.input.take(), s.output.take(), s.reference.take())
            };
            drop((input, output));
            drop(reference);
            return Err(status);
        }
        Ok(())
    }

    /// Starts streaming every idle slot. On a send failure streaming is stopped and the first
    /// failure returned.
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
        for index in 0..self.count {
            let slot = {
                let mut state = self.state.lock();
                let Some(s) = state.slots.get_mut(index) else {
                    break;
                };
                if !core::mem::take(&mut s.reserved) {
                    continue;
                }
                Arc::clone(&state.requests[index])
            };
            if result.is_err() {
                // An earlier send failed: the rest of the reserved streams end unsent.
                self.end_stream(index);
                continue;
            }
            if let Err(status) = self.send_slot(&slot, None) {
                result = Err(status);
            }
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
                match s.phase {
                    Phase::InFlight => Some(s.seq),
                    Phase::Sending => {
                        s.cancel_pending = true;
                        None
                    }
                    Phase::Idle | Phase::Completing => None,
                }
                .map(|seq| (seq, Arc::clone(&state.requests[index])))
            };
            let Some((seq, slot)) = in_flight else {
                continue;
            };
            let _ = slot.request.cancel();
            let mut state = self.state.lock();
            let s = &mut state.slots[index];
            if s.seq != seq && s.phase != Phase::Idle {
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
