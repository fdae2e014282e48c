//! Single (non-streaming) requests: create, format, send with a completion at `DISPATCH_LEVEL`
//! or `PASSIVE_LEVEL`, cancel by token, synchronous send. Shared by `RequestTarget` and
//! `ContinuousRequestTarget`.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use wdk_sys::{WDFIOTARGET, WDFOBJECT};

use super::{CompletionOption, DmfRequest, RequestType, SendCompletion, SendResult};
use crate::core::{HeldReference, ReferenceSource};
use crate::wdf::io_target::IoTarget;
use crate::wdf::request::{BoxedCompletion, Completion, MemoryRange, Request, Timeout};
use crate::wdf::spin_lock::SpinLock;
use crate::wdf::work_item::WorkItem;
use crate::wdf::{Memory, NtStatus, PoolType};

/// Source of request ids, shared by every module instance: ids are never reused (DMF seeds its
/// counter with 0xFF and pre-increments).
static NEXT_ID: AtomicU64 = AtomicU64::new(0xFF);

/// A new unique id.
pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed) + 1
}

/// The status a send without an I/O target fails with.
pub(crate) const NO_TARGET: NtStatus = NtStatus::DEVICE_NOT_CONNECTED;

/// One request in flight: what the pending list and the completion share.
struct SendRecord {
    request: Request,
    input: Option<Memory>,
    output: Option<Memory>,
    request_type: RequestType,
    id: u64,
}

/// The completion state of one send, owned by the framework while the request is out.
struct SendContext {
    record: Arc<SendRecord>,
    callback: Option<SendCompletion>,
    option: CompletionOption,
    shared: Weak<SingleShared>,
    completion: Option<Completion>,
    /// Last: fields drop in order, so the request, its memory and the client's callback are
    /// gone before close (waiting for this reference) can go on.
    _reference: HeldReference,
}

struct SingleState {
    target: Option<usize>,
    pending: Vec<Arc<SendRecord>>,
    passive_queue: VecDeque<Box<SendContext>>,
    passive_outstanding: usize,
    work_item: Option<WorkItem>,
}

/// The single-request machinery of a target module.
pub(crate) struct SingleShared {
    state: SpinLock<SingleState>,
    references: ReferenceSource,
    parent: usize,
}

impl SingleShared {
    pub(crate) fn new(
        references: ReferenceSource,
        parent: WDFOBJECT,
    ) -> Result<Arc<Self>, NtStatus> {
        Ok(Arc::new(Self {
            state: SpinLock::create(SingleState {
                target: None,
                pending: Vec::new(),
                passive_queue: VecDeque::new(),
                passive_outstanding: 0,
                work_item: None,
            })?,
            references,
            parent: parent as usize,
        }))
    }

    /// Open: creates the work item that runs passive-level completions.
    pub(crate) fn open(self: &Arc<Self>) -> Result<(), NtStatus> {
        let weak = Arc::downgrade(self);
        let item = WorkItem::new(self.parent as WDFOBJECT, move || {
            if let Some(shared) = weak.upgrade() {
                shared.drain_passive();
            }
        })?;
        self.state.lock().work_item = Some(item);
        Ok(())
    }

    /// Cancels every asynchronous send still out (close is waiting for them).
    pub(crate) fn cancel_all(&self) {
        let mut snapshot: Vec<Arc<SendRecord>> = Vec::new();
        {
            let state = self.state.lock();
            if snapshot.try_reserve(state.pending.len()).is_ok() {
                snapshot.extend(state.pending.iter().cloned());
            }
        }
        for record in snapshot {
            let _ = record.request.cancel();
        }
    }

    /// Close: deletes the work item (after every completion was processed).
    pub(crate) fn close(&self) {
        let item = {
            let mut state = self.state.lock();
            state.target = None;
            state.work_item.take()
        };
        drop(item);
    }

    pub(crate) fn target(&self) -> Option<IoTarget> {
        self.state
            .lock()
            .target
            .map(|handle| IoTarget::borrowed(handle as WDFIOTARGET))
    }

    /// Stores the target; `INVALID_DEVICE_STATE` if one is set already.
    pub(crate) fn set_target(&self, target: &IoTarget) -> Result<(), NtStatus> {
        let mut state = self.state.lock();
        if state.target.is_some() {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        state.target = Some(target.handle() as usize);
        Ok(())
    }

    pub(crate) fn clear_target(&self) {
        self.state.lock().target = None;
    }

    /// Builds a formatted request over copies of the caller's input and an output buffer of
    /// `output_length` bytes.
    fn build(
        target: &IoTarget,
        input: &[u8],
        output_length: usize,
        request_type: RequestType,
        ioctl: u32,
    ) -> Result<SendRecord, NtStatus> {
        let request = Request::create(Some(target), None)?;
        let input_memory = if input.is_empty() {
            None
        } else {
            let mut memory = Memory::create(input.len(), PoolType::NonPaged, None)?;
            memory.as_mut_slice().copy_from_slice(input);
            Some(memory)
        };
        let output_memory = if output_length == 0 {
            None
        } else {
            Some(Memory::create(output_length, PoolType::NonPaged, None)?)
        };
        let input_range = input_memory
            .as_ref()
            .map(|m| MemoryRange::whole(m.handle()));
        let output_range = output_memory
            .as_ref()
            .map(|m| MemoryRange::whole(m.handle()));
        match request_type {
            RequestType::Read => {
                request.format_read(target, output_range.ok_or(NtStatus::INVALID_PARAMETER)?)?;
            }
            RequestType::Write => {
                request.format_write(target, input_range.ok_or(NtStatus::INVALID_PARAMETER)?)?;
            }
            RequestType::Ioctl | RequestType::InternalIoctl => request.format_ioctl(
                target,
                ioctl,
                request_type == RequestType::InternalIoctl,
                input_range,
                output_range,
            )?,
        }
        Ok(SendRecord {
            request,
            input: input_memory,
            output: output_memory,
            request_type,
            id: next_id(),
        })
    }

    /// Asynchronous send; returns the new request's token.
    #[allow(clippy::too_many_arguments, reason = "DMF's Send parameters")]
    pub(crate) fn send(
        self: &Arc<Self>,
        input: &[u8],
        output_length: usize,
        request_type: RequestType,
        ioctl: u32,
        timeout_ms: u32,
        option: CompletionOption,
        callback: Option<SendCompletion>,
    ) -> Result<DmfRequest, NtStatus> {
        let reference = self.references.acquire()?;
        let target = self.target().ok_or(NO_TARGET)?;
        let record = Arc::new(Self::build(
            &target,
            input,
            output_length,
            request_type,
            ioctl,
        )?);
        let id = record.id;
        {
            let mut state = self.state.lock();
            state
                .pending
                .try_reserve(1)
                .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
            if option == CompletionOption::Passive {
                // Room in the passive queue for every passive send out, so a completion never
                // needs to allocate (and is never lost).
                let needed = state.passive_outstanding + 1;
                let additional = needed.saturating_sub(state.passive_queue.len());
                state
                    .passive_queue
                    .try_reserve(additional)
                    .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
                state.passive_outstanding += 1;
            }
            state.pending.push(Arc::clone(&record));
        }
        let context = Box::new(SendContext {
            record: Arc::clone(&record),
            callback,
            option,
            shared: Arc::downgrade(self),
            completion: None,
            _reference: reference,
        });
        match record
            .request
            .send_boxed(&target, Timeout::from_millis(timeout_ms), context)
        {
            Ok(()) => Ok(DmfRequest(id)),
            Err((status, context)) => {
                {
                    let mut state = self.state.lock();
                    state.pending.retain(|r| r.id != id);
                    if option == CompletionOption::Passive {
                        state.passive_outstanding -= 1;
                    }
                }
                drop(context);
                Err(status)
            }
        }
    }

    /// Synchronous send; returns the bytes transferred. `PASSIVE_LEVEL`.
    pub(crate) fn send_synchronously(
        &self,
        input: &[u8],
        output: &mut [u8],
        request_type: RequestType,
        ioctl: u32,
        timeout_ms: u32,
    ) -> Result<usize, NtStatus> {
        let _reference = self.references.acquire()?;
        let target = self.target().ok_or(NO_TARGET)?;
        let record = Self::build(&target, input, output.len(), request_type, ioctl)?;
        let bytes = record
            .request
            .send_synchronously(&target, Timeout::from_millis(timeout_ms))?;
        if let Some(memory) = &record.output {
            let length = bytes.min(output.len());
            output[..length].copy_from_slice(&memory.as_slice()[..length]);
        }
        Ok(bytes)
    }

    /// Cancels the request of `token` if it is still out; true if cancellation was initiated.
    pub(crate) fn cancel(&self, token: DmfRequest) -> bool {
        let Ok(_reference) = self.references.acquire() else {
            return false;
        };
        let record = {
            let state = self.state.lock();
            state.pending.iter().find(|r| r.id == token.0).cloned()
        };
        record.is_some_and(|record| record.request.cancel())
    }

    /// Requests still out.
    pub(crate) fn pending(&self) -> usize {
        self.state.lock().pending.len()
    }

    fn drain_passive(&self) {
        loop {
            let next = {
                let mut state = self.state.lock();
                let next = state.passive_queue.pop_front();
                if next.is_some() {
                    state.passive_outstanding -= 1;
                }
                next
            };
            let Some(context) = next else {
                return;
            };
            context.finish();
        }
    }
}

fn whole(memory: Option<&Memory>) -> &[u8] {
    memory.map_or(&[][..], Memory::as_slice)
}

impl SendContext {
    /// Runs the client's callback, then releases the request and the module reference.
    #[allow(
        clippy::boxed_local,
        reason = "the context arrives boxed from the framework"
    )]
    fn finish(mut self: Box<Self>) {
        let completion = self.completion.unwrap_or(Completion {
            status: NtStatus::UNSUCCESSFUL,
            information: 0,
            ioctl: 0,
        });
        let record = &self.record;
        let information = completion.information;
        let (input, output) = match record.request_type {
            RequestType::Read => {
                let out = whole(record.output.as_ref());
                (&[][..], &out[..information.min(out.len())])
            }
            RequestType::Write => {
                let input = whole(record.input.as_ref());
                (&input[..information.min(input.len())], &[][..])
            }
            RequestType::Ioctl | RequestType::InternalIoctl => {
                let out = whole(record.output.as_ref());
                (
                    whole(record.input.as_ref()),
                    &out[..information.min(out.len())],
                )
            }
        };
        if let Some(callback) = self.callback.take() {
            callback(&SendResult {
                input,
                output,
                status: completion.status,
                information,
            });
        }
    }
}

impl BoxedCompletion for SendContext {
    fn completed(mut self: Box<Self>, completion: &Completion) {
        self.completion = Some(*completion);
        let Some(shared) = self.shared.upgrade() else {
            self.finish();
            return;
        };
        let id = self.record.id;
        let mut state = shared.state.lock();
        state.pending.retain(|r| r.id != id);
        if self.option == CompletionOption::Passive {
            // Capacity was reserved at send time: this never allocates.
            state.passive_queue.push_back(self);
            // Enqueued under the lock, so close cannot delete the item meanwhile.
            if let Some(item) = &state.work_item {
                item.enqueue();
            }
            return;
        }
        drop(state);
        // Released before the client's callback: `finish` releases the module reference, and
        // close (which waits for it) must find no strong reference of a completion to the
        // state, which owns the module's lock; the state is never freed on this thread.
        drop(shared);
        self.finish();
    }
}
