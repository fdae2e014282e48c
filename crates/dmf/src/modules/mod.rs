//! The DMF modules: one file per module, safe Rust over [`crate::wdf`] and [`crate::core`].
//!
//! | Module | Purpose |
//! |---|---|
//! | [`buffer_pool`] | a list of fixed-size buffers with per-buffer context; source or sink, optional expiry timers |
//! | [`buffer_queue`] | producer/consumer pair of buffer pools |
//! | [`continuous_request_target`] | keep N requests streaming to an I/O target with pooled buffers; single requests too |
//! | [`device_interface_multiple_target`] | open every instance of a device interface as its own target with its own streaming or request child |
//! | [`device_interface_target`] | open the first instance of a device interface as a target, stream or send through it, follow its removal |
//! | [`notify_user_with_request`] | park requests (e.g. user-mode IOCTLs) and complete them when there is something to report, with optional buffered data |
//! | [`queued_work_item`] | run a callback at passive level once per enqueue, with a copied parameter block |
//! | [`request_target`] | single requests to an I/O target: asynchronous with a completion callback and cancel token, or synchronous |
//! | [`thread`] | a dedicated system thread with start/stop and work-ready signalling |
//! | [`threaded_buffer_queue`] | a buffer queue drained by its own thread, one work callback per buffer; callers may wait for the work's status |

pub mod buffer_pool;
pub mod buffer_queue;
pub mod continuous_request_target;
pub mod device_interface_multiple_target;
pub mod device_interface_target;
pub mod notify_user_with_request;
pub mod queued_work_item;
pub mod request_target;
pub mod thread;
pub mod threaded_buffer_queue;

pub use buffer_pool::{
    BufferPool, BufferPoolConfig, BufferPoolMode, EnumerationDisposition, PoolBuffer, PutError,
    PutErrorKind, SourceSettings,
};
pub use buffer_queue::{BufferQueue, BufferQueueConfig};
pub use notify_user_with_request::{
    NotifyUserWithRequest, NotifyUserWithRequestConfig, ParkedRequest, RejectedRequest,
};
pub use queued_work_item::{QueuedWork, QueuedWorkItem, QueuedWorkItemConfig};
pub use thread::{Thread, ThreadConfig, ThreadContext, ThreadControl};
pub use threaded_buffer_queue::{ThreadedBufferQueue, ThreadedBufferQueueConfig};
