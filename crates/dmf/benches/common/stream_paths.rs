//! The two streaming paths the streaming benchmarks compare, on the same simulation: a
//! hand-written raw reuse/format/send loop on `dmf::wdf`, and a `ContinuousRequestTarget`, each
//! keeping `REQUESTS` requests in flight against a programmable target that completes each one
//! at once (inline, in the sender's `WdfRequestSend`) with a `SAMPLE`-byte answer.
//!
//! Each path counts its good completions in a [`Counter`], which also runs the window hooks a
//! benchmark set (the callgrind benchmark starts and stops instrumentation there, so that the
//! instructions it reports are exactly those of a known number of completions, on every
//! thread) and wakes a thread that waits for a count without spinning.
#![allow(dead_code, reason = "each benchmark uses part of it")]

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use dmf::core::ModuleAttributes;
use dmf::modules::continuous_request_target::{
    BufferDisposition, ContinuousRequestTarget, ContinuousRequestTargetConfig, Mode, RequestType,
};
use dmf::wdf::io_target::{IoTarget, RemoveCallbacks};
use dmf::wdf::request::{Completion, MemoryRange, Request, SharedCompletion, Timeout};
use dmf::wdf::work_item::WorkItem;
use dmf::wdf::{Memory, NtStatus, PoolType};
use wdk_sys::WDFOBJECT;
use wdk_sys::sim::pnp::{Device, Driver};
use wdk_sys::sim::target::{ProgrammableTarget, Response};

/// A window of completions `[start, stop)` and what to run at its ends.
pub struct WindowHooks {
    pub start_at: u64,
    pub stop_at: u64,
    pub on_start: fn(),
    pub on_stop: fn(),
}

/// Completions counted by one path.
pub struct Counter {
    count: AtomicU64,
    hooks: Mutex<Option<WindowHooks>>,
    /// Set when `hooks` is: the count path only locks then.
    armed: AtomicBool,
    waiter: Mutex<u64>,
    reached: Condvar,
}

impl Counter {
    pub fn new() -> Self {
        Self {
            count: AtomicU64::new(0),
            hooks: Mutex::new(None),
            armed: AtomicBool::new(false),
            waiter: Mutex::new(u64::MAX),
            reached: Condvar::new(),
        }
    }

    /// Counts one completion (called by the path's completion or output callback).
    pub fn count(&self) {
        let n = self.count.fetch_add(1, Ordering::AcqRel) + 1;
        if self.armed.load(Ordering::Acquire) {
            let hooks = self.hooks.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(hooks) = hooks.as_ref() {
                if n == hooks.start_at {
                    (hooks.on_start)();
                }
                if n == hooks.stop_at {
                    (hooks.on_stop)();
                }
            }
            drop(hooks);
            let target = self.waiter.lock().unwrap_or_else(PoisonError::into_inner);
            if n >= *target {
                self.reached.notify_all();
            }
        }
    }

    pub fn get(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Runs `hooks` at the ends of their window (relative counts from now are the caller's
    /// business: `start_at` and `stop_at` are absolute).
    pub fn arm(&self, hooks: WindowHooks) {
        *self.hooks.lock().unwrap_or_else(PoisonError::into_inner) = Some(hooks);
        self.armed.store(true, Ordering::Release);
    }

    /// Blocks (no spinning: a waiting thread adds no instructions) until the count reaches
    /// `value`. Only for an armed counter.
    pub fn wait_blocking(&self, value: u64) {
        let deadline = Instant::now() + Duration::from_mins(10);
        let mut target = self.waiter.lock().unwrap_or_else(PoisonError::into_inner);
        *target = value;
        while self.get() < value {
            assert!(Instant::now() < deadline, "streaming stalled");
            target = self
                .reached
                .wait_timeout(target, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *target = u64::MAX;
    }

    /// Spins until the count reaches `value` (bounded): for timing, where a wake-up would add
    /// latency.
    pub fn wait_spinning(&self, value: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.get() < value {
            assert!(Instant::now() < deadline, "streaming stalled");
            std::hint::spin_loop();
            std::thread::yield_now();
        }
    }
}

/// Requests kept in flight by each path.
pub const REQUESTS: usize = 4;
pub const IOCTL: u32 = 0x0022_6000;
pub const SAMPLE: usize = 24;

/// The benchmark's host driver: one plain device per `add_device`.
pub struct BenchDriver;

impl dmf::wdf::entry::DriverCallbacks for BenchDriver {
    fn device_add(
        _driver: dmf::wdf::driver::Driver,
        init: dmf::wdf::device::DeviceInit,
    ) -> Result<(), dmf::wdf::NtStatus> {
        init.create(None).map(|_| ())
    }
}

dmf::driver_entry!(BenchDriver);

/// A driver, its device and a programmable target answering each request at once.
pub struct Rig {
    driver: Driver,
    host: Device,
    target_device: ProgrammableTarget,
}

impl Rig {
    pub fn boot(name: &str) -> Self {
        let target_device = ProgrammableTarget::create(name);
        let sample = [7u8; SAMPLE];
        target_device.set_responder(move |_| Response::data(&sample));
        let driver = Driver::load(driver_entry).expect("driver loads");
        let host = driver.add_device().expect("device added");
        host.start().expect("device starts");
        Self {
            driver,
            host,
            target_device,
        }
    }

    pub fn parent(&self) -> WDFOBJECT {
        self.host.handle().cast()
    }

    pub fn open(&self) -> IoTarget {
        let target = IoTarget::create(dmf::wdf::device::Device::from_raw(self.host.handle()))
            .expect("target created");
        let name: Vec<u16> = self.target_device.symbolic_link().encode_utf16().collect();
        target
            .open_by_name(&name, RemoveCallbacks::default())
            .expect("target opened");
        target
    }

    pub fn shut_down(self) {
        self.host.remove();
        self.driver.unload();
        drop(self.target_device);
    }
}

// ---- the raw loop ------------------------------------------------------------------------

/// Completions one raw loop processes before it hands its slot to the slot's work item (the
/// same bound `ContinuousRequestTarget` uses).
const RAW_BUDGET: u32 = 32;

/// The raw slot's phases (an `AtomicU8`).
const IDLE: u8 = 0;
/// Between setting up the send and seeing it return.
const SENDING: u8 = 1;
/// The send returned; the completion routine goes on.
const OUT: u8 = 2;
/// Completed before the send returned; the sender goes on.
const EARLY: u8 = 3;

/// State shared by the raw loop's requests.
pub struct RawShared {
    target: IoTarget,
    pub completed: Counter,
    running: AtomicBool,
    in_flight: AtomicUsize,
}

/// One raw request, its output buffer, and the work item that takes over its loop.
struct RawSlot {
    shared: Arc<RawShared>,
    request: Request,
    output: Memory,
    phase: AtomicU8,
    work_item: WorkItem,
}

impl RawSlot {
    /// The hand-written loop a correct raw driver needs against a target that completes inline:
    /// reuse, format, send (the send holds an `Arc` clone: no allocation); if the request
    /// completed before the send returned, send again here instead of from inside the
    /// completion routine. After `RAW_BUDGET` rounds the slot's work item takes over.
    fn pump(self: &Arc<Self>) {
        let mut budget = RAW_BUDGET;
        while self.shared.running.load(Ordering::Acquire) {
            if budget == 0 {
                self.work_item.enqueue();
                return;
            }
            budget -= 1;
            let formatted = self.request.reuse(NtStatus::SUCCESS).and_then(|()| {
                self.request.format_ioctl(
                    &self.shared.target,
                    IOCTL,
                    false,
                    None,
                    Some(MemoryRange::whole(self.output.handle())),
                )
            });
            if formatted.is_err() {
                return;
            }
            self.phase.store(SENDING, Ordering::Release);
            self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
            let sent = self.request.send_shared(
                &self.shared.target,
                Timeout::from_millis(0),
                Arc::clone(self),
            );
            if sent.is_err() {
                self.phase.store(IDLE, Ordering::Release);
                self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
                return;
            }
            if self
                .phase
                .compare_exchange(SENDING, OUT, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // Out at the target: its completion routine goes on.
                return;
            }
            // EARLY: completed inline; loop.
        }
    }
}

impl SharedCompletion for RawSlot {
    fn completed(self: Arc<Self>, completion: &Completion) {
        if completion.status.is_success() && completion.information == SAMPLE {
            self.shared.completed.count();
        }
        let inline = self
            .phase
            .compare_exchange(SENDING, EARLY, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        if !inline {
            self.phase.store(IDLE, Ordering::Release);
            self.pump();
        }
    }
}

pub struct RawLoop {
    pub shared: Arc<RawShared>,
    slots: Vec<Arc<RawSlot>>,
}

impl RawLoop {
    pub fn start(rig: &Rig) -> Self {
        let shared = Arc::new(RawShared {
            target: rig.open(),
            completed: Counter::new(),
            running: AtomicBool::new(true),
            in_flight: AtomicUsize::new(0),
        });
        let slots: Vec<Arc<RawSlot>> = (0..REQUESTS)
            .map(|_| {
                Arc::new_cyclic(|weak: &Weak<RawSlot>| {
                    let weak = weak.clone();
                    RawSlot {
                        shared: Arc::clone(&shared),
                        request: Request::create(Some(&shared.target), Some(rig.parent()))
                            .expect("request"),
                        output: Memory::create(SAMPLE, PoolType::NonPaged, Some(rig.parent()))
                            .expect("buffer"),
                        phase: AtomicU8::new(IDLE),
                        work_item: WorkItem::new(rig.parent(), move || {
                            if let Some(slot) = weak.upgrade() {
                                slot.pump();
                            }
                        })
                        .expect("work item"),
                    }
                })
            })
            .collect();
        for slot in &slots {
            slot.pump();
        }
        Self { shared, slots }
    }

    pub fn stop(self) {
        self.shared.running.store(false, Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.shared.in_flight.load(Ordering::Acquire) > 0 {
            assert!(Instant::now() < deadline, "raw loop did not drain");
            std::thread::yield_now();
        }
        // The last completion (or a loop) releases its clone right after; wait for the slots
        // to be ours alone before deleting their requests and work items.
        for slot in self.slots {
            let mut slot = slot;
            loop {
                match Arc::try_unwrap(slot) {
                    Ok(owned) => {
                        drop(owned);
                        break;
                    }
                    Err(shared) => {
                        slot = shared;
                        std::thread::yield_now();
                    }
                }
            }
        }
        let target = Arc::try_unwrap(self.shared)
            .ok()
            .expect("no send holds the loop")
            .target;
        target.close();
    }
}

// ---- the DMF path ------------------------------------------------------------------------

pub struct DmfLoop {
    pub completed: Arc<Counter>,
    streamer: ContinuousRequestTarget,
    target: IoTarget,
}

impl DmfLoop {
    pub fn start(rig: &Rig) -> Self {
        let completed = Arc::new(Counter::new());
        let counter = Arc::clone(&completed);
        let config = ContinuousRequestTargetConfig {
            continuous_request_count: REQUESTS,
            buffer_count_output: REQUESTS,
            buffer_output_size: SAMPLE,
            request_type: RequestType::Ioctl,
            ioctl: IOCTL,
            mode: Mode::Automatic,
            buffer_output: Some(Box::new(move |output, status| {
                if status.is_success() && output.as_ref().is_some_and(|b| b.data().len() == SAMPLE)
                {
                    counter.count();
                }
                BufferDisposition::ContinuousRequestTargetAndContinueStreaming
            })),
            ..ContinuousRequestTargetConfig::default()
        };
        let streamer =
            ContinuousRequestTarget::create(rig.parent(), config, ModuleAttributes::new())
                .expect("module created");
        let target = rig.open();
        streamer.io_target_set(&target).expect("streaming starts");
        Self {
            completed,
            streamer,
            target,
        }
    }

    pub fn stop(self) {
        self.streamer.io_target_clear();
        drop(self.streamer);
        self.target.close();
    }
}
