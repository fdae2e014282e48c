//! What the buffer benchmarks compare: the modules, and the same-lock baseline — a plain
//! `VecDeque` of buffers of the same shape (data and context) behind the same simulated spin
//! lock the modules use (`dmf::wdf::spin_lock::SpinLock`), taken as often as the module takes
//! its lock (a pool get+put: twice; a queue cycle: four times), zeroing a returned buffer as a
//! source pool does.
#![allow(dead_code, reason = "each benchmark uses part of it")]

use std::collections::VecDeque;
use std::hint::black_box;

use dmf::core::ModuleAttributes;
use dmf::modules::buffer_pool::{BufferPool, BufferPoolConfig, SourceSettings};
use dmf::modules::buffer_queue::{BufferQueue, BufferQueueConfig};
use dmf::wdf::spin_lock::SpinLock;
use wdk_sys::WDFOBJECT;

pub const BUFFERS: usize = 64;
pub const SIZE: usize = 64;
pub const CONTEXT: usize = 8;

pub fn settings(look_aside: bool) -> SourceSettings {
    SourceSettings {
        buffer_count: BUFFERS,
        buffer_size: SIZE,
        buffer_context_size: CONTEXT,
        enable_look_aside: look_aside,
        ..SourceSettings::default()
    }
}

/// The operations compared: one "cycle" each.
pub trait Subject: Sync {
    fn pool_cycle(&self);
    fn queue_cycle(&self);
}

pub struct Dmf {
    pub pool: BufferPool,
    pub queue: BufferQueue,
}

impl Dmf {
    pub fn create(parent: WDFOBJECT) -> Self {
        Self {
            pool: BufferPool::create(
                parent,
                BufferPoolConfig::source(settings(false)),
                ModuleAttributes::new(),
            )
            .expect("pool"),
            queue: BufferQueue::create(
                parent,
                BufferQueueConfig::new(settings(false)),
                ModuleAttributes::new(),
            )
            .expect("queue"),
        }
    }
}

impl Subject for Dmf {
    fn pool_cycle(&self) {
        let mut buffer = self.pool.get().expect("free buffer");
        buffer.data_mut()[0] = 1;
        self.pool.put(black_box(buffer)).expect("own buffer");
    }

    fn queue_cycle(&self) {
        let mut buffer = self.queue.fetch().expect("free buffer");
        buffer.data_mut()[0] = 1;
        self.queue.enqueue(buffer).expect("own buffer");
        let work = self.queue.dequeue().expect("queued work");
        black_box(work.data()[0]);
        self.queue.reuse(work).expect("own buffer");
    }
}

/// A buffer of the same shape as a pool's: data and context.
pub struct Plain {
    data: Box<[u8]>,
    context: Box<[u8]>,
}

impl Plain {
    fn zero(&mut self) {
        self.data.fill(0);
        self.context.fill(0);
    }
}

pub struct SameLockBaseline {
    free: SpinLock<VecDeque<Plain>>,
    work: SpinLock<VecDeque<Plain>>,
}

impl SameLockBaseline {
    pub fn create() -> Self {
        let free = (0..BUFFERS)
            .map(|_| Plain {
                data: vec![0u8; SIZE].into_boxed_slice(),
                context: vec![0u8; CONTEXT].into_boxed_slice(),
            })
            .collect();
        Self {
            free: SpinLock::create(free).expect("spin lock"),
            work: SpinLock::create(VecDeque::with_capacity(BUFFERS)).expect("spin lock"),
        }
    }
}

impl Subject for SameLockBaseline {
    fn pool_cycle(&self) {
        let mut buffer = self.free.lock().pop_front().expect("free buffer");
        buffer.data[0] = 1;
        let mut buffer = black_box(buffer);
        buffer.zero();
        self.free.lock().push_back(buffer);
    }

    fn queue_cycle(&self) {
        let mut buffer = self.free.lock().pop_front().expect("free buffer");
        buffer.data[0] = 1;
        self.work.lock().push_back(buffer);
        let mut work = self.work.lock().pop_front().expect("queued work");
        black_box(work.data[0]);
        work.zero();
        self.free.lock().push_back(work);
    }
}
