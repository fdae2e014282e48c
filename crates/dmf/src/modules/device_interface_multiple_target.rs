//! `DeviceInterfaceMultipleTarget`: like
//! [`DeviceInterfaceTarget`](super::device_interface_target) but opens **every** instance of a
//! device-interface class. Each arriving interface becomes a *target*: its own remote I/O
//! target, its own [`ContinuousRequestTarget`](super::continuous_request_target) (streaming)
//! or [`RequestTarget`](super::request_target) (single requests), and its own run-down
//! protection. The client names a target with a [`Target`] handle, given to it in the
//! target's callbacks.
//!
//! The module is *open* while at least one target is: it opens when the first target arrives
//! (the post-open hook runs before that target's `Open`) and closes when the last one goes
//! (the pre-close hook runs after that target's last state change).
//!
//! # Targets are handles
//!
//! A [`Target`] is an opaque, copyable handle: an index into a table the module owns, a
//! generation number and the module's identity. It cannot be built by the client, and once its
//! target is destroyed (or while it is closed for a query-remove) every method given it fails
//! with `STATUS_INVALID_DEVICE_STATE`; a handle of another module instance fails the same way.
//! Nothing is freed under a method: a method holds the target's run-down reference while it
//! runs, and destroying a target waits for those.
//!
//! # Configuration ([`DeviceInterfaceMultipleTargetConfig`])
//!
//! | Field | Meaning |
//! |---|---|
//! | `module_open_option` | [`PnpRegisterWhen`]: register/unregister in `PrepareHardware`/`ReleaseHardware` (default), `D0Entry`/`D0Exit` (targets are destroyed at each `D0Exit` and found again at `D0Entry`), or create/destroy (required for a dynamic module) |
//! | `device_interface_multiple_target_guid` | the interface class |
//! | `open_mode`, `share_access` | [`OpenMode`] and [`ShareAccess`] of each open (default read/write, shared read/write) |
//! | `continuous_request_target_config` | each target's child: `continuous_request_count > 0` a `ContinuousRequestTarget` with this configuration (its buffer callbacks are shared by every target; `mode` says who streams), 0 a `RequestTarget`; `purge_and_start_target_in_d0_callbacks` must be false (per-target children are dynamic) |
//! | `on_state_change` / `on_state_change_ex` | told each state change of a target ([`TargetState`]); the `_ex` form may refuse `Open` and `QueryRemove`; one of them at most |
//! | `on_pnp_notification` | asked whether an arriving interface is opened |
//!
//! # Callbacks (IRQL)
//!
//! All at `PASSIVE_LEVEL`, one event at a time, with the module ([`DeviceInterfaceMultipleTargetNode`])
//! and, for state changes, the [`Target`]. Per target:
//!
//! | Event | Callbacks |
//! |---|---|
//! | arrival | `on_pnp_notification` → (first target: post-open hook) → `Open` (the target's methods work) → streaming (Automatic) |
//! | interface disabled | streaming stops → target closed → `Close` (its methods fail) → (last target: pre-close hook) |
//! | query-remove | `QueryRemove` (may veto) → streaming stops → target closed for the query (methods fail) |
//! | remove-cancel | target reopened → streaming restarts → `QueryRemoveCancelled` (nothing after a veto) |
//! | remove-complete after query-remove | `QueryRemoveComplete` → target destroyed |
//! | surprise removal | the target's methods fail from now on → streaming stops → `QueryRemoveComplete` → target closed → `Close` → destroyed (the module, if it was the last target, closes after that) |
//! | unregister | each target: streaming stops → target closed → `Close` (methods fail) → destroyed; then the pre-close hook |
//! | interface disabled or unregister while closed for a query-remove | `Close` → destroyed |
//!
//! No callback of a target runs after its `Close` (or, after a query-remove, its
//! `QueryRemoveComplete`), and none at all after the module is dropped.
//!
//! # Methods and IRQL
//!
//! | Method | IRQL | Notes |
//! |---|---|---|
//! | [`buffer_put`](DeviceInterfaceMultipleTargetNode::buffer_put) | `<= DISPATCH_LEVEL` | streaming child only |
//! | [`get`](DeviceInterfaceMultipleTargetNode::get) / [`target_reference`](DeviceInterfaceMultipleTargetNode::target_reference) | `<= DISPATCH_LEVEL` | a guard holding the module and target references, with the raw target |
//! | [`guid_get`](DeviceInterfaceMultipleTargetNode::guid_get) | any | always works |
//! | [`send`](DeviceInterfaceMultipleTargetNode::send) / [`send_ex`](DeviceInterfaceMultipleTargetNode::send_ex) | `<= DISPATCH_LEVEL` | single asynchronous request to the target |
//! | [`cancel`](DeviceInterfaceMultipleTargetNode::cancel) | `<= DISPATCH_LEVEL` | false when the target is gone |
//! | [`send_synchronously`](DeviceInterfaceMultipleTargetNode::send_synchronously) | `PASSIVE_LEVEL` | |
//! | [`stream_start`](DeviceInterfaceMultipleTargetNode::stream_start) | `<= DISPATCH_LEVEL` | streaming child only |
//! | [`stream_stop`](DeviceInterfaceMultipleTargetNode::stream_stop) | `PASSIVE_LEVEL` | no-op when the target is gone |
//! | [`open_targets`](DeviceInterfaceMultipleTargetNode::open_targets) | any | targets open now |
//!
//! Every method except `guid_get` and `open_targets` takes a module reference and the
//! target's run-down reference: with the target gone, closed for a query-remove or closing,
//! it fails with `STATUS_INVALID_DEVICE_STATE` (`cancel` returns false, `stream_stop` does
//! nothing). Methods of the streaming kind on a `RequestTarget` child fail with
//! `STATUS_INVALID_DEVICE_REQUEST`. An asynchronous send holds a module reference until its
//! completion callback returned.
//!
//! # Example
//!
//! ```ignore
//! let config = DeviceInterfaceMultipleTargetConfig {
//!     device_interface_multiple_target_guid: GUID_DEVINTERFACE_SENSOR,
//!     continuous_request_target_config: streaming_config, // Mode::Automatic
//!     on_state_change: Some(Box::new(|module, target, state| match state {
//!         TargetState::Open => remember(target),
//!         TargetState::Close | TargetState::QueryRemoveComplete => forget(target),
//!         _ => {}
//!     })),
//!     ..DeviceInterfaceMultipleTargetConfig::default()
//! };
//! let sensors = DeviceInterfaceMultipleTarget::create(device, config, ModuleAttributes::static_module())?;
//! modules.add(&sensors)?;
//! // later: sensors.send_synchronously(target, &[], &mut out, RequestType::Ioctl, IOCTL, 0)
//! ```
//!
//! # Differences from DMF
//!
//! * `open_mode` and `share_access` are honoured (DMF always opens read/write, shared).
//! * A target handle is a generation-checked table index, not a pointer: a stale or foreign
//!   handle fails with `STATUS_INVALID_DEVICE_STATE` instead of touching freed memory.
//! * A vetoed query-remove leaves the target as it was (DMF keeps its "query-remove happened"
//!   flag, so a later remove-complete skips stopping the target and the destroy deletes
//!   nothing).
//! * A target closed for a query-remove that is destroyed because its interface went or the
//!   module unregisters is told `Close` (DMF deletes it without a callback, so a client never
//!   learns that its handle died): every target's life ends with `Close` or, after an agreed
//!   query-remove, `QueryRemoveComplete`.
//! * Only targets that are open count towards keeping the module open (DMF counts down for
//!   every destroyed target at unregister, and can close the module while targets are left).
//! * Closing a target makes its methods fail first, then closes it (cancelling single and
//!   synchronous requests still out, failing later sends), then waits for the calls in
//!   progress (DMF waits before closing for a query-remove, which a pending synchronous send
//!   hangs); a `stream_start` racing the close fails instead of restarting streams the close
//!   waits for.
//! * Buffer and completion callbacks are closures (shared by every target's child) rather than
//!   functions given the module handle; a missing output callback stops a stream on a failed
//!   completion, as a bare `ContinuousRequestTarget` does.
//! * The reuse methods and DMF's user-mode variant are not provided.

use alloc::boxed::Box;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use wdk_sys::{GUID, WDFIOTARGET};

use super::continuous_request_target::{
    BufferDisposition, BufferInputCallback, BufferOutputCallback, ContinuousRequestTargetConfig,
    Mode, OutputBuffer,
};
use super::device_interface_target::{Child, Notify, holding, state_callbacks};
pub use super::device_interface_target::{OpenMode, PnpRegisterWhen, ShareAccess, TargetState};
use super::request_target::{CompletionOption, DmfRequest, RequestType, SendCompletion};
use crate::core::lifecycle;
use crate::core::{Module, ModuleAttributes, ModuleCore, ModuleNode, ModuleReference, References};
use crate::dmf_trace;
use crate::error::{ConfigError, ModuleError};
use crate::wdf::NtStatus;
use crate::wdf::device::Device;
use crate::wdf::io_target::{IoTarget, OpenAccess, RemoveHandler};
use crate::wdf::pnp_notification::{InterfaceChange, InterfaceNotification};
use crate::wdf::spin_lock::SpinLock;
use crate::wdf::trace::TraceLevel;
use crate::wdf::wait_lock::WaitLock;

/// Identities of module instances, so a handle of one module is refused by another.
static NEXT_MODULE: AtomicU32 = AtomicU32::new(1);

/// One target of a [`DeviceInterfaceMultipleTarget`] (DMF's `DeviceInterfaceMultipleTarget_Target`):
/// an opaque handle, valid until the target is destroyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    module: u32,
    index: u32,
    generation: u32,
}

/// Told each state change of a target.
pub type MultipleStateChangeCallback =
    Box<dyn Fn(&DeviceInterfaceMultipleTargetNode, Target, TargetState) + Send + Sync>;

/// Told each state change of a target; an error refuses `Open` or `QueryRemove`.
pub type MultipleStateChangeExCallback = Box<
    dyn Fn(&DeviceInterfaceMultipleTargetNode, Target, TargetState) -> Result<(), NtStatus>
        + Send
        + Sync,
>;

/// Asked whether an arriving interface (its symbolic link) is opened.
pub type MultiplePnpNotificationCallback =
    Box<dyn Fn(&DeviceInterfaceMultipleTargetNode, &[u16]) -> bool + Send + Sync>;

/// Configuration of a [`DeviceInterfaceMultipleTarget`]
/// (DMF's `DMF_CONFIG_DeviceInterfaceMultipleTarget`).
#[derive(Default)]
pub struct DeviceInterfaceMultipleTargetConfig {
    /// When notifications are registered.
    pub module_open_option: PnpRegisterWhen,
    /// The interface class.
    pub device_interface_multiple_target_guid: GUID,
    /// The access of each open.
    pub open_mode: OpenMode,
    /// The sharing of each open.
    pub share_access: ShareAccess,
    /// Each target's child (`continuous_request_count == 0`: a `RequestTarget`).
    pub continuous_request_target_config: ContinuousRequestTargetConfig,
    /// State changes.
    pub on_state_change: Option<MultipleStateChangeCallback>,
    /// State changes, vetoing.
    pub on_state_change_ex: Option<MultipleStateChangeExCallback>,
    /// Whether an arrival is opened.
    pub on_pnp_notification: Option<MultiplePnpNotificationCallback>,
}

impl core::fmt::Debug for DeviceInterfaceMultipleTargetConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceInterfaceMultipleTargetConfig")
            .field("module_open_option", &self.module_open_option)
            .field("open_mode", &self.open_mode)
            .field("share_access", &self.share_access)
            .field(
                "continuous_request_target_config",
                &self.continuous_request_target_config,
            )
            .finish_non_exhaustive()
    }
}

type SharedInput = Arc<dyn Fn(&mut [u8], &mut [u8]) -> usize + Send + Sync>;
type SharedOutput =
    Arc<dyn Fn(&mut Option<OutputBuffer>, NtStatus) -> BufferDisposition + Send + Sync>;

/// The child configuration every target's child is built from.
struct Template {
    config: ContinuousRequestTargetConfig,
    input: Option<SharedInput>,
    output: Option<SharedOutput>,
}

impl Template {
    fn new(mut config: ContinuousRequestTargetConfig) -> Self {
        let input = config.buffer_input.take().map(SharedInput::from);
        let output = config.buffer_output.take().map(SharedOutput::from);
        Self {
            config,
            input,
            output,
        }
    }

    fn build(&self) -> ContinuousRequestTargetConfig {
        let c = &self.config;
        ContinuousRequestTargetConfig {
            continuous_request_count: c.continuous_request_count,
            buffer_count_input: c.buffer_count_input,
            buffer_count_output: c.buffer_count_output,
            request_type: c.request_type,
            buffer_input_size: c.buffer_input_size,
            buffer_context_input_size: c.buffer_context_input_size,
            buffer_output_size: c.buffer_output_size,
            buffer_context_output_size: c.buffer_context_output_size,
            enable_look_aside_output: c.enable_look_aside_output,
            pool_type_input: c.pool_type_input,
            pool_type_output: c.pool_type_output,
            buffer_input: self.input.clone().map(|f| -> BufferInputCallback {
                Box::new(move |data, context| f(data, context))
            }),
            buffer_output: self.output.clone().map(|f| -> BufferOutputCallback {
                Box::new(move |output, status| f(output, status))
            }),
            ioctl: c.ioctl,
            purge_and_start_target_in_d0_callbacks: false,
            mode: c.mode,
        }
    }
}

/// What methods reach through the table.
struct Entry {
    rundown: Arc<References>,
    /// `stream_start` calls in progress; ended before the target stops streaming to close.
    starts: Arc<References>,
    child: Arc<Child>,
    /// The raw target while it is open (0 while closed for a query-remove).
    io_target: usize,
}

struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

/// A live target as the `PnP` paths see it.
#[allow(
    clippy::struct_excessive_bools,
    reason = "DMF's per-target flags, each set and cleared by its own path"
)]
struct Live {
    handle: Target,
    target: IoTarget,
    name: Vec<u16>,
    rundown: Arc<References>,
    /// DMF's `IoTarget != NULL`: open, not closed for a query-remove.
    io_open: bool,
    /// Counted in `opened` (keeps the module open).
    counted: bool,
    query_remove_happened: bool,
    closing: bool,
}

struct Pnp {
    live: Vec<Live>,
    opened: usize,
}

/// The removal callbacks of one target.
struct TargetEvents {
    module: Weak<DeviceInterfaceMultipleTargetNode>,
    callbacks: Arc<References>,
    handle: Target,
}

impl TargetEvents {
    fn run<R>(
        &self,
        default: R,
        f: impl FnOnce(&DeviceInterfaceMultipleTargetNode, Target) -> R,
    ) -> R {
        if self.callbacks.acquire().is_err() {
            return default;
        }
        let result = self
            .module
            .upgrade()
            .map_or(default, |module| f(&module, self.handle));
        self.callbacks.release();
        result
    }
}

impl RemoveHandler for TargetEvents {
    fn query_remove(&self, _target: &IoTarget) -> Result<(), NtStatus> {
        self.run(Ok(()), DeviceInterfaceMultipleTargetNode::query_remove_flow)
    }

    fn remove_canceled(&self, _target: &IoTarget) {
        self.run((), DeviceInterfaceMultipleTargetNode::remove_cancel_flow);
    }

    fn remove_complete(&self, _target: &IoTarget) {
        self.run((), DeviceInterfaceMultipleTargetNode::remove_complete_flow);
    }
}

/// The module object of a [`DeviceInterfaceMultipleTarget`].
pub struct DeviceInterfaceMultipleTargetNode {
    core: ModuleCore,
    this: Weak<Self>,
    id: u32,
    device: Device,
    guid: GUID,
    access: OpenAccess,
    mode: Mode,
    passive: bool,
    template: Template,
    notify: Notify<MultipleStateChangeCallback, MultipleStateChangeExCallback>,
    on_pnp_notification: Option<MultiplePnpNotificationCallback>,
    pnp: WaitLock<Pnp>,
    table: SpinLock<Vec<Slot>>,
    registration: WaitLock<Option<InterfaceNotification>>,
    callbacks: Arc<References>,
    /// `Pnp::opened`, readable without the `PnP` lock.
    open_count: AtomicUsize,
}

/// A `DeviceInterfaceMultipleTarget` module (see the [module documentation](self)).
pub struct DeviceInterfaceMultipleTarget(Module<DeviceInterfaceMultipleTargetNode>);

impl AsRef<Module<DeviceInterfaceMultipleTargetNode>> for DeviceInterfaceMultipleTarget {
    fn as_ref(&self) -> &Module<DeviceInterfaceMultipleTargetNode> {
        &self.0
    }
}

impl core::ops::Deref for DeviceInterfaceMultipleTarget {
    type Target = DeviceInterfaceMultipleTargetNode;

    fn deref(&self) -> &DeviceInterfaceMultipleTargetNode {
        &self.0
    }
}

impl Drop for DeviceInterfaceMultipleTarget {
    fn drop(&mut self) {
        self.0.shut_down();
    }
}

impl DeviceInterfaceMultipleTarget {
    /// Creates the module on `device` (which owns the targets). A dynamic module (the default
    /// attributes) needs `PnpRegisterWhen::Create` and registers before this returns. Invalid
    /// configurations, including one every target's child would refuse, fail with a typed
    /// error.
    pub fn create(
        device: Device,
        mut config: DeviceInterfaceMultipleTargetConfig,
        attributes: ModuleAttributes,
    ) -> Result<Self, ModuleError> {
        let notify = state_callbacks(
            config.on_state_change.take(),
            config.on_state_change_ex.take(),
        )?;
        let crt = core::mem::take(&mut config.continuous_request_target_config);
        let passive = attributes.passive_level;
        if crt.continuous_request_count > 0 {
            if crt.purge_and_start_target_in_d0_callbacks {
                return Err(ConfigError::D0CallbacksOnDynamicChild.into());
            }
            crt.validate(passive)?;
        }
        let core = ModuleCore::new(
            "DeviceInterfaceMultipleTarget",
            config.module_open_option.open_option(),
            true,
            attributes,
        )?;
        let mode = if crt.continuous_request_count > 0 {
            crt.mode
        } else {
            Mode::Manual
        };
        let pnp = WaitLock::create(Pnp {
            live: Vec::new(),
            opened: 0,
        })?;
        let table = SpinLock::create(Vec::new())?;
        let registration = WaitLock::create(None)?;
        let callbacks = Arc::new(References::new());
        callbacks.start();
        let access = OpenAccess {
            desired_access: config.open_mode.desired_access(),
            share_access: config.share_access.bits(),
        };
        let guid = config.device_interface_multiple_target_guid;
        let on_pnp_notification = config.on_pnp_notification.take();
        let template = Template::new(crt);
        Ok(Self(Module::new_cyclic(|this| {
            DeviceInterfaceMultipleTargetNode {
                core,
                this: this.clone(),
                id: NEXT_MODULE.fetch_add(1, Ordering::Relaxed),
                device,
                guid,
                access,
                mode,
                passive,
                template,
                notify,
                on_pnp_notification,
                pnp,
                table,
                registration,
                callbacks,
                open_count: AtomicUsize::new(0),
            }
        })?))
    }
}

/// A target pinned for use (DMF's `TargetReference` / `TargetDereference` as a guard): the
/// module and the target stay open while it lives, and its raw target is valid.
pub struct TargetGuard<'a> {
    _reference: ModuleReference<'a>,
    _pinned: Pinned,
    target: IoTarget,
}

impl TargetGuard<'_> {
    /// The target (borrowed: valid only while the guard lives).
    #[must_use]
    pub fn io_target(&self) -> &IoTarget {
        &self.target
    }

    /// The raw `WDFIOTARGET`, for framework calls made while the guard lives.
    #[must_use]
    pub fn handle(&self) -> WDFIOTARGET {
        self.target.handle()
    }
}

impl core::fmt::Debug for TargetGuard<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TargetGuard")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// The target's reference taken by a method (released when dropped).
struct Pinned {
    rundown: Arc<References>,
    starts: Arc<References>,
    child: Arc<Child>,
    io_target: usize,
}

impl Drop for Pinned {
    fn drop(&mut self) {
        self.rundown.release();
    }
}

impl DeviceInterfaceMultipleTargetNode {
    /// Takes the target's run-down reference (the caller holds a module reference).
    fn pin(&self, target: Target) -> Result<Pinned, NtStatus> {
        if target.module != self.id {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        let table = self.table.lock();
        let entry = table
            .get(target.index as usize)
            .filter(|slot| slot.generation == target.generation)
            .and_then(|slot| slot.entry.as_ref())
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        entry.rundown.acquire()?;
        Ok(Pinned {
            rundown: Arc::clone(&entry.rundown),
            starts: Arc::clone(&entry.starts),
            child: Arc::clone(&entry.child),
            io_target: entry.io_target,
        })
    }

    fn completion_option(&self) -> CompletionOption {
        if self.passive {
            CompletionOption::Passive
        } else {
            CompletionOption::Dispatch
        }
    }

    /// Returns a client-owned output buffer to the target's child
    /// (`DMF_DeviceInterfaceMultipleTarget_BufferPut`).
    pub fn buffer_put(&self, target: Target, buffer: OutputBuffer) -> Result<(), NtStatus> {
        let _reference = self.core.reference()?;
        let pinned = self.pin(target)?;
        pinned
            .child
            .stream()?
            .buffer_put(buffer)
            .map_err(|error| error.status())
    }

    /// Pins the target and gives its raw target (`DMF_DeviceInterfaceMultipleTarget_Get`).
    pub fn get(&self, target: Target) -> Result<TargetGuard<'_>, NtStatus> {
        self.target_reference(target)
    }

    /// Pins the target and the module while the guard lives
    /// (`DMF_DeviceInterfaceMultipleTarget_TargetReference` / `TargetDereference`).
    pub fn target_reference(&self, target: Target) -> Result<TargetGuard<'_>, NtStatus> {
        let reference = self.core.reference()?;
        let pinned = self.pin(target)?;
        if pinned.io_target == 0 {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        let handle = pinned.io_target as WDFIOTARGET;
        Ok(TargetGuard {
            _reference: reference,
            _pinned: pinned,
            target: IoTarget::borrowed(handle),
        })
    }

    /// The configured interface class (`DMF_DeviceInterfaceMultipleTarget_GuidGet`).
    #[must_use]
    pub fn guid_get(&self) -> GUID {
        self.guid
    }

    /// Single asynchronous request to the target
    /// (`DMF_DeviceInterfaceMultipleTarget_Send`), completion at the module's level.
    #[allow(clippy::too_many_arguments, reason = "DMF's Send parameters")]
    pub fn send(
        &self,
        target: Target,
        input: &[u8],
        output_length: usize,
        request_type: RequestType,
        ioctl: u32,
        timeout_ms: u32,
        callback: Option<SendCompletion>,
    ) -> Result<(), NtStatus> {
        self.send_ex(
            target,
            input,
            output_length,
            request_type,
            ioctl,
            timeout_ms,
            self.completion_option(),
            callback,
        )
        .map(|_| ())
    }

    /// Single asynchronous request with a per-call completion level and a cancel token
    /// (`DMF_DeviceInterfaceMultipleTarget_SendEx`).
    #[allow(clippy::too_many_arguments, reason = "DMF's SendEx parameters")]
    pub fn send_ex(
        &self,
        target: Target,
        input: &[u8],
        output_length: usize,
        request_type: RequestType,
        ioctl: u32,
        timeout_ms: u32,
        completion_option: CompletionOption,
        callback: Option<SendCompletion>,
    ) -> Result<DmfRequest, NtStatus> {
        let reference = self.core.reference_held()?;
        let pinned = self.pin(target)?;
        pinned.child.send_ex(
            input,
            output_length,
            request_type,
            ioctl,
            timeout_ms,
            completion_option,
            holding(reference, callback),
        )
    }

    /// Cancels a request sent with `send_ex` to the target
    /// (`DMF_DeviceInterfaceMultipleTarget_Cancel`).
    pub fn cancel(&self, target: Target, token: DmfRequest) -> bool {
        let Ok(_reference) = self.core.reference() else {
            return false;
        };
        self.pin(target)
            .is_ok_and(|pinned| pinned.child.cancel(token))
    }

    /// Single synchronous request (`DMF_DeviceInterfaceMultipleTarget_SendSynchronously`,
    /// `PASSIVE_LEVEL`).
    pub fn send_synchronously(
        &self,
        target: Target,
        input: &[u8],
        output: &mut [u8],
        request_type: RequestType,
        ioctl: u32,
        timeout_ms: u32,
    ) -> Result<usize, NtStatus> {
        let _reference = self.core.reference()?;
        let pinned = self.pin(target)?;
        pinned
            .child
            .send_synchronously(input, output, request_type, ioctl, timeout_ms)
    }

    /// Starts streaming to the target (`DMF_DeviceInterfaceMultipleTarget_StreamStart`).
    pub fn stream_start(&self, target: Target) -> Result<(), NtStatus> {
        let _reference = self.core.reference()?;
        let pinned = self.pin(target)?;
        let stream = pinned.child.stream()?;
        // Closing the target stops streaming and waits: a start must not race that wait.
        pinned.starts.acquire()?;
        let result = stream.start();
        pinned.starts.release();
        result
    }

    /// Stops streaming to the target and waits
    /// (`DMF_DeviceInterfaceMultipleTarget_StreamStop`, `PASSIVE_LEVEL`).
    pub fn stream_stop(&self, target: Target) {
        let Ok(_reference) = self.core.reference() else {
            return;
        };
        if let Ok(pinned) = self.pin(target)
            && let Ok(stream) = pinned.child.stream()
        {
            stream.stop_and_wait();
        }
    }

    /// Targets open now (those closed for a query-remove not included).
    #[must_use]
    pub fn open_targets(&self) -> usize {
        self.open_count.load(Ordering::Acquire)
    }

    fn notify(&self, target: Target, state: TargetState) -> Result<(), NtStatus> {
        match &self.notify {
            Notify::None => Ok(()),
            Notify::Plain(callback) => {
                callback(self, target, state);
                Ok(())
            }
            Notify::Vetoing(callback) => callback(self, target, state),
        }
    }

    /// DMF's `…ModuleOpenIfNoOpenTargets`.
    fn count_up(&self, pnp: &mut Pnp) -> Result<(), NtStatus> {
        pnp.opened += 1;
        if pnp.opened == 1
            && let Err(status) = lifecycle::open(self)
        {
            pnp.opened = 0;
            return Err(status);
        }
        self.open_count.store(pnp.opened, Ordering::Release);
        Ok(())
    }

    /// DMF's `…ModuleCloseIfNoOpenTargets`.
    fn count_down(&self, pnp: &mut Pnp) {
        if pnp.opened > 0 {
            pnp.opened -= 1;
            self.open_count.store(pnp.opened, Ordering::Release);
            if pnp.opened == 0 {
                lifecycle::close(self);
            }
        }
    }

    fn set_io_target(&self, handle: Target, io_target: usize) {
        let mut table = self.table.lock();
        if let Some(entry) = table
            .get_mut(handle.index as usize)
            .filter(|slot| slot.generation == handle.generation)
            .and_then(|slot| slot.entry.as_mut())
        {
            entry.io_target = io_target;
        }
    }

    /// Reserves a table slot for a new target; `None` when out of memory.
    fn slot_new(&self, rundown: &Arc<References>, child: &Arc<Child>) -> Option<Target> {
        let mut table = self.table.lock();
        let entry = Entry {
            rundown: Arc::clone(rundown),
            starts: Arc::new(References::new()),
            child: Arc::clone(child),
            io_target: 0,
        };
        if let Some((index, slot)) = table
            .iter_mut()
            .enumerate()
            .find(|(_, slot)| slot.entry.is_none())
        {
            slot.generation = slot.generation.wrapping_add(1);
            slot.entry = Some(entry);
            return Some(Target {
                module: self.id,
                index: u32::try_from(index).ok()?,
                generation: slot.generation,
            });
        }
        let index = u32::try_from(table.len()).ok()?;
        table.try_reserve(1).ok()?;
        table.push(Slot {
            generation: 1,
            entry: Some(entry),
        });
        Some(Target {
            module: self.id,
            index,
            generation: 1,
        })
    }

    /// Frees a slot: the handle is dead from now on. Returns the child to drop (outside the
    /// table lock).
    fn slot_free(&self, handle: Target) -> Option<Arc<Child>> {
        let mut table = self.table.lock();
        table
            .get_mut(handle.index as usize)
            .filter(|slot| slot.generation == handle.generation)
            .and_then(|slot| slot.entry.take())
            .map(|entry| entry.child)
    }

    fn child_of(&self, handle: Target) -> Option<Arc<Child>> {
        let table = self.table.lock();
        table
            .get(handle.index as usize)
            .filter(|slot| slot.generation == handle.generation)
            .and_then(|slot| slot.entry.as_ref())
            .map(|entry| Arc::clone(&entry.child))
    }

    fn starts_of(&self, handle: Target) -> Option<Arc<References>> {
        let table = self.table.lock();
        table
            .get(handle.index as usize)
            .filter(|slot| slot.generation == handle.generation)
            .and_then(|slot| slot.entry.as_ref())
            .map(|entry| Arc::clone(&entry.starts))
    }

    /// Lets clients start streaming on the target (again).
    fn allow_starts(&self, handle: Target) {
        if let Some(starts) = self.starts_of(handle) {
            starts.start();
        }
    }

    fn start_streaming(&self, handle: Target) -> Result<(), NtStatus> {
        if self.mode != Mode::Automatic {
            return Ok(());
        }
        match self.child_of(handle) {
            Some(child) => match child.stream() {
                Ok(stream) => stream.start(),
                Err(_) => Ok(()),
            },
            None => Ok(()),
        }
    }

    fn stop_streaming(&self, handle: Target) {
        if let Some(starts) = self.starts_of(handle) {
            starts.end_and_wait();
        }
        if let Some(child) = self.child_of(handle)
            && let Ok(stream) = child.stream()
        {
            if self.mode == Mode::Automatic {
                stream.stop_and_wait();
            } else if stream.is_streaming() {
                dmf_trace!(
                    TraceLevel::Error,
                    self.core.name(),
                    "Manual mode: streaming was not stopped before the target closed; stopping it"
                );
                stream.stop_and_wait();
            }
        }
    }

    fn arrival_flow(&self, name: &[u16]) {
        let mut pnp = self.pnp.lock();
        if pnp.live.iter().any(|live| live.name == name) {
            return;
        }
        if let Some(callback) = &self.on_pnp_notification
            && !callback(self, name)
        {
            return;
        }
        if let Err(status) = self.arrive(&mut pnp, name) {
            dmf_trace!(
                TraceLevel::Warning,
                self.core.name(),
                "arrival dropped: {status:?}"
            );
        }
    }

    /// Steps 3 to 8 of DMF's `…InitializeIoTargetIfNeeded`; on failure everything created is
    /// gone again.
    fn arrive(&self, pnp: &mut Pnp, name: &[u16]) -> Result<(), NtStatus> {
        let mut saved = Vec::new();
        saved
            .try_reserve_exact(name.len())
            .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        saved.extend_from_slice(name);
        pnp.live
            .try_reserve(1)
            .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        let (child, _) = Child::create(self.device, self.template.build(), self.passive, true)
            .map_err(ModuleError::status)?;
        let child = Arc::new(child);
        let rundown = Arc::new(References::new());
        let handle = self
            .slot_new(&rundown, &child)
            .ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        let undo_slot = |this: &Self| drop(this.slot_free(handle));
        if let Err(status) = self.count_up(pnp) {
            drop(child);
            undo_slot(self);
            return Err(status);
        }
        let events = TargetEvents {
            module: self.this.clone(),
            callbacks: Arc::clone(&self.callbacks),
            handle,
        };
        let opened =
            IoTarget::create_with_handler(self.device, Box::new(events)).and_then(|target| {
                target.open_by_name_with(name, self.access)?;
                child.io_target_set(&target)?;
                Ok(target)
            });
        let target = match opened {
            Ok(target) => target,
            Err(status) => {
                drop(child);
                undo_slot(self);
                self.count_down(pnp);
                return Err(status);
            }
        };
        rundown.start();
        self.allow_starts(handle);
        self.set_io_target(handle, target.handle() as usize);
        drop(child);
        let mut live = Live {
            handle,
            target,
            name: saved,
            rundown,
            io_open: true,
            counted: true,
            query_remove_happened: false,
            closing: false,
        };
        if let Err(status) = self.notify(handle, TargetState::Open) {
            // Refused: gone without a Close.
            live.io_open = false;
            live.rundown.end_and_wait();
            live.target.close();
            self.target_destroy(&mut live, false);
            self.uncount(pnp, &mut live);
            return Err(status);
        }
        if let Err(status) = self.start_streaming(handle) {
            self.target_destroy(&mut live, false);
            self.uncount(pnp, &mut live);
            return Err(status);
        }
        pnp.live.push(live);
        Ok(())
    }

    fn uncount(&self, pnp: &mut Pnp, live: &mut Live) {
        if live.counted {
            live.counted = false;
            self.count_down(pnp);
        }
    }

    /// DMF's `DeviceInterfaceMultipleTarget_TargetDestroy`. `announce`: a target closed for a
    /// query-remove is told `Close` too (its interface went, or the module unregisters), so
    /// every target's life ends with a callback.
    fn target_destroy(&self, live: &mut Live, announce: bool) {
        if !live.closing {
            live.closing = true;
            self.stop_streaming(live.handle);
            if live.io_open {
                live.rundown.begin_close();
                live.target.close();
                live.rundown.end_and_wait();
                let _ = self.notify(live.handle, TargetState::Close);
                live.io_open = false;
                self.set_io_target(live.handle, 0);
            } else if announce {
                let _ = self.notify(live.handle, TargetState::Close);
            }
        }
        live.rundown.end_and_wait();
        // The child goes before the target it was given.
        drop(self.slot_free(live.handle));
    }

    /// DMF's `…StopTargetAndCloseModule` followed by `WdfIoTargetCloseForQueryRemove`: new
    /// method calls on the target fail first, then the target is closed for the query (which
    /// cancels what is out, including synchronous sends, and fails what comes later), then
    /// the calls in progress are waited for.
    fn stop_target_and_close_for_query(&self, pnp: &mut Pnp, live: &mut Live) {
        live.rundown.begin_close();
        self.stop_streaming(live.handle);
        live.target.close_for_query_remove();
        live.rundown.end_and_wait();
        self.uncount(pnp, live);
    }

    fn find(pnp: &Pnp, handle: Target) -> Option<usize> {
        pnp.live.iter().position(|live| live.handle == handle)
    }

    fn removal_flow(&self, name: &[u16]) {
        let mut pnp = self.pnp.lock();
        let Some(index) = pnp.live.iter().position(|live| live.name == name) else {
            return;
        };
        let mut live = pnp.live.remove(index);
        self.target_destroy(&mut live, true);
        self.uncount(&mut pnp, &mut live);
    }

    fn query_remove_flow(&self, handle: Target) -> Result<(), NtStatus> {
        let mut pnp = self.pnp.lock();
        let Some(index) = Self::find(&pnp, handle) else {
            return Ok(());
        };
        if !pnp.live[index].io_open {
            return Ok(());
        }
        pnp.live[index].query_remove_happened = true;
        if self.notify(handle, TargetState::QueryRemove).is_err() {
            pnp.live[index].query_remove_happened = false;
            return Err(NtStatus::UNSUCCESSFUL);
        }
        let mut live = pnp.live.remove(index);
        self.stop_target_and_close_for_query(&mut pnp, &mut live);
        live.io_open = false;
        self.set_io_target(handle, 0);
        pnp.live.insert(index, live);
        Ok(())
    }

    fn remove_cancel_flow(&self, handle: Target) {
        let mut pnp = self.pnp.lock();
        let Some(index) = Self::find(&pnp, handle) else {
            return;
        };
        pnp.live[index].query_remove_happened = false;
        if pnp.live[index].io_open || pnp.live[index].closing {
            // The query was vetoed: nothing to undo, nothing reported.
            return;
        }
        if let Err(status) = pnp.live[index].target.reopen() {
            dmf_trace!(
                TraceLevel::Warning,
                self.core.name(),
                "target not reopened after a cancelled removal: {status:?}"
            );
            return;
        }
        let mut live = pnp.live.remove(index);
        if self.count_up(&mut pnp).is_ok() {
            live.counted = true;
        }
        live.rundown.start();
        self.allow_starts(handle);
        live.io_open = true;
        self.set_io_target(handle, live.target.handle() as usize);
        pnp.live.insert(index, live);
        let _ = self.start_streaming(handle);
        let _ = self.notify(handle, TargetState::QueryRemoveCancelled);
    }

    fn remove_complete_flow(&self, handle: Target) {
        let mut pnp = self.pnp.lock();
        let Some(index) = Self::find(&pnp, handle) else {
            return;
        };
        let mut live = pnp.live.remove(index);
        if live.query_remove_happened {
            live.query_remove_happened = false;
        } else {
            // Surprise removal: the target's methods fail from now on and streaming stops; the
            // module closes only after the target's last callback (`Close`).
            live.rundown.begin_close();
            self.stop_streaming(handle);
        }
        let _ = self.notify(handle, TargetState::QueryRemoveComplete);
        self.target_destroy(&mut live, false);
        self.uncount(&mut pnp, &mut live);
    }

    fn unregister_flow(&self) {
        let mut pnp = self.pnp.lock();
        // Every target's callbacks first, then the module closes (after the last one).
        let mut gone = core::mem::take(&mut pnp.live);
        for live in gone.iter_mut().rev() {
            self.target_destroy(live, true);
        }
        for live in &mut gone {
            self.uncount(&mut pnp, live);
        }
        drop(gone);
        if pnp.opened > 0 {
            pnp.opened = 1;
            self.count_down(&mut pnp);
        }
    }

    fn unregister_now(&self) {
        let registration = self.registration.lock().take();
        drop(registration);
        self.unregister_flow();
    }

    /// The owner drops the module: unregister, let running framework callbacks finish and keep
    /// new ones out, then destroy whatever target is left.
    fn shut_down(&self) {
        if self.core.swap_registered(false) {
            self.unregister_now();
        }
        self.callbacks.end_and_wait();
        self.unregister_flow();
    }
}

impl ModuleNode for DeviceInterfaceMultipleTargetNode {
    fn core(&self) -> &ModuleCore {
        &self.core
    }

    fn notification_register(&self) -> Result<(), NtStatus> {
        let module = self.this.clone();
        let callbacks = Arc::clone(&self.callbacks);
        let registration = InterfaceNotification::register(
            self.device.driver(),
            &self.guid,
            true,
            move |change, name| {
                if callbacks.acquire().is_err() {
                    return;
                }
                if let Some(module) = module.upgrade() {
                    match change {
                        InterfaceChange::Arrival => module.arrival_flow(name),
                        InterfaceChange::Removal => module.removal_flow(name),
                    }
                }
                callbacks.release();
            },
        )?;
        *self.registration.lock() = Some(registration);
        Ok(())
    }

    fn notification_unregister(&self) {
        self.unregister_now();
    }
}

impl core::fmt::Debug for DeviceInterfaceMultipleTargetNode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceInterfaceMultipleTarget")
            .field("core", &self.core)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for DeviceInterfaceMultipleTarget {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        (**self).fmt(f)
    }
}
