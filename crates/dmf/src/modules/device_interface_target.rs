//! `DeviceInterfaceTarget`: watch a device-interface class, open the first instance that
//! appears as a remote I/O target, and expose it through a [`ContinuousRequestTarget`]
//! (streaming) or a [`RequestTarget`] (single requests); follow the target's removal protocol
//! (query-remove, remove-cancel, remove-complete, surprise removal, interface disable) and the
//! driver's own teardown, racing safely. One interface instance at a time; see
//! [`device_interface_multiple_target`](super::device_interface_multiple_target) for all of
//! them.
//!
//! The module registers for interface notifications when its open option says
//! ([`PnpRegisterWhen`]); interfaces already present are reported at once. It is *open* only
//! while a target is bound: an arrival opens the target and then the module, a removal closes
//! the module and then the target. Its child (created with the module) stays open for the
//! module's whole life and is handed the target on each open (`io_target_set`) and loses it on
//! each close (`io_target_clear`).
//!
//! # Configuration ([`DeviceInterfaceTargetConfig`])
//!
//! | Field | Meaning |
//! |---|---|
//! | `module_open_option` | when notifications are registered and unregistered: `PrepareHardware` / `ReleaseHardware` (default), `D0Entry` / `D0Exit`, or at create / destroy (required for a dynamic module) |
//! | `device_interface_target_guid` | the interface class to watch |
//! | `open_mode` | [`OpenMode`]: the `DesiredAccess` of the open (default read/write) |
//! | `share_access` | [`ShareAccess`]: the `ShareAccess` of the open (default read/write) |
//! | `continuous_request_target_config` | `continuous_request_count > 0`: the child is a `ContinuousRequestTarget` with this configuration (its `mode` says who starts streaming); 0: the child is a `RequestTarget` |
//! | `on_state_change` | told each state change of the target ([`TargetState`]) |
//! | `on_state_change_ex` | the same, and may refuse `Open` and `QueryRemove` (only one of the two may be set) |
//! | `on_pnp_notification` | asked whether an arriving interface (its symbolic link) is opened; without it every arrival is |
//!
//! # Callbacks (IRQL)
//!
//! Every callback runs at `PASSIVE_LEVEL` on the thread that delivers the event (the `PnP`
//! notification thread, or the thread removing the target's device), one event at a time.
//! Each gets the module ([`DeviceInterfaceTargetNode`]). Client-visible order:
//!
//! | Event | Callbacks |
//! |---|---|
//! | arrival | `on_pnp_notification` → `Open` (the module is **not open yet**: its methods fail with `STATUS_INVALID_DEVICE_STATE` there) → post-open hook (methods work) → streaming starts (Automatic) |
//! | query-remove | `QueryRemove` (methods work; `on_state_change_ex` may veto) → streaming stops → pre-close hook → target closed for the query |
//! | remove-cancel | target reopened → post-open hook → streaming restarts (Automatic) → `QueryRemoveCancelled` (also after a veto) |
//! | remove-complete after query-remove | `QueryRemoveComplete` → target deleted |
//! | surprise removal | `QueryRemoveComplete` (methods work) → streaming stops → pre-close hook → target closed and deleted |
//! | interface disabled | no state change: streaming stops → pre-close hook → target closed and deleted |
//! | unregister (`ReleaseHardware`, `D0Exit`, destroy) | `Close` (methods work) → streaming stops → pre-close hook → target closed and deleted |
//!
//! The child's buffer callbacks ([`ContinuousRequestTargetConfig::buffer_input`] /
//! `buffer_output`) and send completions run as the child's documentation says.
//!
//! # Methods and IRQL
//!
//! | Method | IRQL | Notes |
//! |---|---|---|
//! | [`buffer_put`](DeviceInterfaceTargetNode::buffer_put) | `<= DISPATCH_LEVEL` | streaming child only |
//! | [`get`](DeviceInterfaceTargetNode::get) | `<= DISPATCH_LEVEL` | the target, behind a guard that holds a module reference |
//! | [`guid_get`](DeviceInterfaceTargetNode::guid_get) | any | the configured class; works when closed |
//! | [`send`](DeviceInterfaceTargetNode::send) / [`send_ex`](DeviceInterfaceTargetNode::send_ex) | `<= DISPATCH_LEVEL` | single asynchronous request; `send_ex` returns a cancel token |
//! | [`cancel`](DeviceInterfaceTargetNode::cancel) | `<= DISPATCH_LEVEL` | false when closed |
//! | [`send_synchronously`](DeviceInterfaceTargetNode::send_synchronously) | `PASSIVE_LEVEL` | bytes transferred |
//! | [`stream_start`](DeviceInterfaceTargetNode::stream_start) | `<= DISPATCH_LEVEL` | streaming child only |
//! | [`stream_stop`](DeviceInterfaceTargetNode::stream_stop) | `PASSIVE_LEVEL` | stops and waits; no-op when closed |
//! | [`is_open`](DeviceInterfaceTargetNode::is_open) / [`stream_child`](DeviceInterfaceTargetNode::stream_child) | any | whether a target is bound; the streaming child (pool counters) |
//!
//! Every method except `guid_get` takes a module reference: with no target bound (or while it
//! closes) it fails with `STATUS_INVALID_DEVICE_STATE`. Methods of the streaming kind on a
//! module with a `RequestTarget` child fail with `STATUS_INVALID_DEVICE_REQUEST`. An
//! asynchronous send holds a module reference until its completion callback returned, so the
//! module never closes under it; closing cancels what is still out.
//!
//! # Example
//!
//! ```ignore
//! let config = DeviceInterfaceTargetConfig {
//!     device_interface_target_guid: GUID_DEVINTERFACE_SENSOR,
//!     continuous_request_target_config: ContinuousRequestTargetConfig {
//!         continuous_request_count: 4,
//!         buffer_count_output: 4,
//!         buffer_output_size: 24,
//!         ioctl: IOCTL_READ_SAMPLE,
//!         mode: Mode::Automatic,
//!         buffer_output: Some(Box::new(|output, status| { /* ... */ })),
//!         ..ContinuousRequestTargetConfig::default()
//!     },
//!     on_state_change: Some(Box::new(|_module, state| trace(state))),
//!     ..DeviceInterfaceTargetConfig::default()
//! };
//! let sensor = DeviceInterfaceTarget::create(device, config, ModuleAttributes::static_module())?;
//! modules.add(&sensor)?; // the device's DeviceModules: registers in PrepareHardware
//! ```
//!
//! # Differences from DMF
//!
//! * `open_mode` and `share_access` are honoured, as the module's documentation says (DMF's code
//!   always opens read/write, shared read/write: the defaults here).
//! * The open option is configurable (DMF's `DeviceInterfaceTarget` fixes `PrepareHardware`, or
//!   create for a dynamic module).
//! * A vetoed `Open` closes and deletes the target it had opened (DMF leaves it open in its
//!   context).
//! * After a vetoed query-remove the `PnP` manager may or may not send remove-cancel to the
//!   vetoer; DMF then treats the next query-remove as a duplicate and a later remove-complete
//!   as one that followed a successful query (deleting a target the module still uses). Here a
//!   vetoed query leaves the module as it was: a remove-cancel that follows is reported
//!   (`QueryRemoveCancelled`, as DMF does), and any other event is handled as if no query had
//!   happened.
//! * The child always streams in Manual mode: this module starts streaming after open and
//!   stops it before close when the configuration says Automatic, as DMF does (streaming start
//!   errors are ignored, as in DMF).
//! * In Manual mode a client that did not stop streaming before the module closes does not
//!   crash the driver (DMF resends against a cleared target): the module traces an error and
//!   stops the streams itself.
//! * Closing closes the target (for the query-remove, or for good) before waiting for the
//!   module's references: single and synchronous requests still out are cancelled and later
//!   sends fail, so a call racing the removal cannot hang the close (DMF waits first, and a
//!   pending synchronous send without a timeout hangs it). A `stream_start` racing the close
//!   fails with `STATUS_INVALID_DEVICE_STATE` instead of restarting streams the close waits
//!   for.
//! * A missing output callback stops a stream on a failed completion, as a bare
//!   `ContinuousRequestTarget` does (DMF's trampoline continues, which spins on a removed
//!   device); a missing input callback means no input buffer, as in DMF.
//! * Buffer and completion callbacks are closures that capture what they need, instead of
//!   receiving the module handle.
//! * The reuse methods and DMF's user-mode variant are not provided.
//! * When the owner drops the module, any target still bound (for instance closed for a
//!   query-remove that the `PnP` manager never finished) is deleted before the drop returns,
//!   without further callbacks.

use alloc::boxed::Box;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use wdk_sys::{
    FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE, GENERIC_READ, GENERIC_WRITE, GUID,
    WDFIOTARGET,
};

use super::continuous_request_target::{
    ContinuousRequestTarget, ContinuousRequestTargetConfig, Mode, OutputBuffer,
};
use super::request_target::{
    CompletionOption, DmfRequest, RequestTarget, RequestType, SendCompletion, SendResult,
};
use crate::core::{
    HeldReference, Module, ModuleAttributes, ModuleCore, ModuleNode, ModuleReference, OpenOption,
    References, lifecycle,
};
use crate::dmf_trace;
use crate::error::{ConfigError, ModuleError};
use crate::wdf::NtStatus;
use crate::wdf::device::Device;
use crate::wdf::io_target::{IoTarget, OpenAccess, RemoveHandler};
use crate::wdf::pnp_notification::{InterfaceChange, InterfaceNotification};
use crate::wdf::trace::TraceLevel;
use crate::wdf::wait_lock::WaitLock;

/// When the module registers for interface notifications (DMF's
/// `DeviceInterfaceMultipleTarget_PnpRegisterWhen_Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PnpRegisterWhen {
    /// Register in `PrepareHardware`, unregister in `ReleaseHardware`.
    #[default]
    PrepareHardware,
    /// Register in `D0Entry`, unregister in `D0Exit`.
    D0Entry,
    /// Register when the module is created, unregister when it is destroyed (required for a
    /// dynamic module).
    Create,
}

impl PnpRegisterWhen {
    pub(crate) const fn open_option(self) -> OpenOption {
        match self {
            Self::PrepareHardware => OpenOption::NotifyPrepareHardware,
            Self::D0Entry => OpenOption::NotifyD0Entry,
            Self::Create => OpenOption::NotifyCreate,
        }
    }
}

/// The access a target is opened with (`DesiredAccess`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpenMode {
    /// `GENERIC_READ`.
    Read,
    /// `GENERIC_WRITE`.
    Write,
    /// `GENERIC_READ | GENERIC_WRITE` (what DMF always uses).
    #[default]
    ReadWrite,
}

impl OpenMode {
    /// The access mask.
    #[must_use]
    pub const fn desired_access(self) -> u32 {
        match self {
            Self::Read => GENERIC_READ,
            Self::Write => GENERIC_WRITE,
            Self::ReadWrite => GENERIC_READ | GENERIC_WRITE,
        }
    }
}

/// The sharing a target is opened with (`ShareAccess`, `FILE_SHARE_*` bits); the default is
/// read and write (what DMF always uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareAccess(u32);

impl ShareAccess {
    /// Exclusive.
    pub const NONE: Self = Self(0);
    /// `FILE_SHARE_READ`.
    pub const READ: Self = Self(FILE_SHARE_READ);
    /// `FILE_SHARE_WRITE`.
    pub const WRITE: Self = Self(FILE_SHARE_WRITE);
    /// `FILE_SHARE_DELETE`.
    pub const DELETE: Self = Self(FILE_SHARE_DELETE);

    /// The mask.
    #[must_use]
    pub const fn bits(self) -> u32 {
        self.0
    }
}

impl Default for ShareAccess {
    fn default() -> Self {
        Self(FILE_SHARE_READ | FILE_SHARE_WRITE)
    }
}

impl core::ops::BitOr for ShareAccess {
    type Output = Self;

    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// A state change of the target (DMF's `DeviceInterfaceTarget_StateType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    /// The target was opened (a vetoing callback may refuse it).
    Open,
    /// Its device is asked whether it may be removed (a vetoing callback may refuse).
    QueryRemove,
    /// The removal was cancelled; the target is open again (DMF's `RemoveCancel`).
    QueryRemoveCancelled,
    /// The device is gone (DMF's `RemoveComplete`).
    QueryRemoveComplete,
    /// The module is closing the target because its notifications are unregistered.
    Close,
}

/// Told each state change (DMF's `EVT_DMF_DeviceInterfaceTarget_OnStateChange`).
pub type StateChangeCallback = Box<dyn Fn(&DeviceInterfaceTargetNode, TargetState) + Send + Sync>;

/// Told each state change; an error refuses `Open` or `QueryRemove`, and is ignored for the
/// other states (DMF's `EVT_DMF_DeviceInterfaceTarget_OnStateChangeEx`).
pub type StateChangeExCallback =
    Box<dyn Fn(&DeviceInterfaceTargetNode, TargetState) -> Result<(), NtStatus> + Send + Sync>;

/// Asked whether an arriving interface (its symbolic link, UTF-16 without terminator) is
/// opened (DMF's `EVT_DMF_DeviceInterfaceTarget_OnPnpNotification`).
pub type PnpNotificationCallback =
    Box<dyn Fn(&DeviceInterfaceTargetNode, &[u16]) -> bool + Send + Sync>;

/// Configuration of a [`DeviceInterfaceTarget`] (DMF's `DMF_CONFIG_DeviceInterfaceTarget`).
#[derive(Default)]
pub struct DeviceInterfaceTargetConfig {
    /// When notifications are registered.
    pub module_open_option: PnpRegisterWhen,
    /// The interface class to watch.
    pub device_interface_target_guid: GUID,
    /// The access of the open.
    pub open_mode: OpenMode,
    /// The sharing of the open.
    pub share_access: ShareAccess,
    /// The child's configuration (`continuous_request_count == 0`: a `RequestTarget`).
    pub continuous_request_target_config: ContinuousRequestTargetConfig,
    /// State changes.
    pub on_state_change: Option<StateChangeCallback>,
    /// State changes, vetoing.
    pub on_state_change_ex: Option<StateChangeExCallback>,
    /// Whether an arrival is opened.
    pub on_pnp_notification: Option<PnpNotificationCallback>,
}

impl core::fmt::Debug for DeviceInterfaceTargetConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceInterfaceTargetConfig")
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

/// The state-change callbacks, one of them at most.
pub(crate) enum Notify<F, G> {
    None,
    Plain(F),
    Vetoing(G),
}

/// Checks the callbacks rule shared by both modules.
pub(crate) fn state_callbacks<F, G>(
    plain: Option<F>,
    vetoing: Option<G>,
) -> Result<Notify<F, G>, ConfigError> {
    match (plain, vetoing) {
        (Some(_), Some(_)) => Err(ConfigError::BothStateChangeCallbacks),
        (Some(plain), None) => Ok(Notify::Plain(plain)),
        (None, Some(vetoing)) => Ok(Notify::Vetoing(vetoing)),
        (None, None) => Ok(Notify::None),
    }
}

/// The child: streaming or single requests.
pub(crate) enum Child {
    Stream(ContinuousRequestTarget),
    Requests(RequestTarget),
}

impl Child {
    pub(crate) fn node(&self) -> &dyn ModuleNode {
        match self {
            Self::Stream(stream) => stream.as_ref().node(),
            Self::Requests(requests) => requests.as_ref().node(),
        }
    }

    pub(crate) fn io_target_set(&self, target: &IoTarget) -> Result<(), NtStatus> {
        match self {
            Self::Stream(stream) => stream.io_target_set(target),
            Self::Requests(requests) => requests.io_target_set(target),
        }
    }

    pub(crate) fn io_target_clear(&self) {
        match self {
            Self::Stream(stream) => stream.io_target_clear(),
            Self::Requests(requests) => requests.io_target_clear(),
        }
    }

    pub(crate) fn stream(&self) -> Result<&ContinuousRequestTarget, NtStatus> {
        match self {
            Self::Stream(stream) => Ok(stream),
            Self::Requests(_) => Err(NtStatus::INVALID_DEVICE_REQUEST),
        }
    }

    #[allow(clippy::too_many_arguments, reason = "DMF's SendEx parameters")]
    pub(crate) fn send_ex(
        &self,
        input: &[u8],
        output_length: usize,
        request_type: RequestType,
        ioctl: u32,
        timeout_ms: u32,
        option: CompletionOption,
        callback: SendCompletion,
    ) -> Result<DmfRequest, NtStatus> {
        match self {
            Self::Stream(stream) => stream.send_ex(
                input,
                output_length,
                request_type,
                ioctl,
                timeout_ms,
                option,
                Some(callback),
            ),
            Self::Requests(requests) => requests.send_ex(
                input,
                output_length,
                request_type,
                ioctl,
                timeout_ms,
                option,
                Some(callback),
            ),
        }
    }

    pub(crate) fn cancel(&self, token: DmfRequest) -> bool {
        match self {
            Self::Stream(stream) => stream.cancel(token),
            Self::Requests(requests) => requests.cancel(token),
        }
    }

    pub(crate) fn send_synchronously(
        &self,
        input: &[u8],
        output: &mut [u8],
        request_type: RequestType,
        ioctl: u32,
        timeout_ms: u32,
    ) -> Result<usize, NtStatus> {
        match self {
            Self::Stream(stream) => {
                stream.send_synchronously(input, output, request_type, ioctl, timeout_ms)
            }
            Self::Requests(requests) => {
                requests.send_synchronously(input, output, request_type, ioctl, timeout_ms)
            }
        }
    }

    /// Creates the child a target module uses: a `ContinuousRequestTarget` in Manual mode (the
    /// wrapper does Automatic itself) or a `RequestTarget`. Returns it and the client's mode.
    /// `dynamic`: the child opens at once and is closed when dropped (a per-target child),
    /// instead of being opened and closed by its parent's tree.
    pub(crate) fn create(
        device: Device,
        mut config: ContinuousRequestTargetConfig,
        passive: bool,
        dynamic: bool,
    ) -> Result<(Self, Mode), ModuleError> {
        let attributes = |name| {
            let mut attributes = ModuleAttributes::child_of(passive, name);
            attributes.dynamic = dynamic;
            attributes
        };
        if config.continuous_request_count == 0 {
            let requests =
                RequestTarget::create(device.handle().cast(), attributes("RequestTarget"))?;
            return Ok((Self::Requests(requests), Mode::Manual));
        }
        let mode = config.mode;
        config.mode = Mode::Manual;
        let stream = ContinuousRequestTarget::create(
            device.handle().cast(),
            config,
            attributes("ContinuousRequestTarget"),
        )?;
        Ok((Self::Stream(stream), mode))
    }
}

/// Wraps a client completion so that it holds `reference` until it has run.
pub(crate) fn holding(
    reference: HeldReference,
    callback: Option<SendCompletion>,
) -> SendCompletion {
    Box::new(move |result: &SendResult<'_>| {
        if let Some(callback) = callback {
            callback(result);
        }
        drop(reference);
    })
}

/// Why the bound target is being closed (DMF's `ModuleCloseReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseReason {
    NotSet,
    NotificationUnregister,
    QueryRemove,
    RemoveComplete,
    NotificationRemoval,
    Duplicate,
}

/// The interface instance the module is bound to.
struct Bound {
    target: IoTarget,
    name: Vec<u16>,
    /// Distinguishes the removal callbacks of successive targets.
    id: u64,
    /// The target is open and handed to the child (DMF's `IoTarget != NULL`); false while
    /// closed for a query-remove.
    open: bool,
}

/// What the `PnP` paths share; they run one at a time under this lock.
struct Pnp {
    bound: Option<Bound>,
    reason: CloseReason,
    close_after_remove_cancel: bool,
    /// The last query-remove was vetoed and no remove-cancel came yet.
    vetoed: bool,
    next_id: u64,
}

impl Pnp {
    /// DMF's `DeviceInterfaceTarget_ModuleCloseReasonSet`.
    fn reason_set(&mut self, requested: CloseReason) -> CloseReason {
        if self.vetoed {
            // A vetoed query is over whether or not a remove-cancel told us so.
            self.vetoed = false;
            self.reason = CloseReason::NotSet;
        }
        if self.reason == CloseReason::NotSet {
            self.reason = requested;
            return requested;
        }
        if requested == self.reason {
            return CloseReason::Duplicate;
        }
        if matches!(
            requested,
            CloseReason::NotificationUnregister | CloseReason::NotificationRemoval
        ) {
            self.close_after_remove_cancel = true;
        }
        self.reason
    }

    fn bound_is(&self, id: u64) -> bool {
        self.bound.as_ref().is_some_and(|bound| bound.id == id)
    }
}

/// The removal callbacks of one bound target.
struct TargetEvents {
    module: Weak<DeviceInterfaceTargetNode>,
    callbacks: Arc<References>,
    id: u64,
}

impl TargetEvents {
    fn run<R>(&self, default: R, f: impl FnOnce(&DeviceInterfaceTargetNode) -> R) -> R {
        if self.callbacks.acquire().is_err() {
            return default;
        }
        let result = self.module.upgrade().map_or(default, |module| f(&module));
        self.callbacks.release();
        result
    }
}

impl RemoveHandler for TargetEvents {
    fn query_remove(&self, _target: &IoTarget) -> Result<(), NtStatus> {
        self.run(Ok(()), |module| module.query_remove_flow(self.id))
    }

    fn remove_canceled(&self, _target: &IoTarget) {
        self.run((), |module| module.remove_cancel_flow(self.id));
    }

    fn remove_complete(&self, _target: &IoTarget) {
        self.run((), |module| module.remove_complete_flow(self.id));
    }
}

/// The module object of a [`DeviceInterfaceTarget`].
pub struct DeviceInterfaceTargetNode {
    core: ModuleCore,
    this: Weak<Self>,
    device: Device,
    guid: GUID,
    access: OpenAccess,
    mode: Mode,
    child: Child,
    notify: Notify<StateChangeCallback, StateChangeExCallback>,
    on_pnp_notification: Option<PnpNotificationCallback>,
    pnp: WaitLock<Pnp>,
    registration: WaitLock<Option<InterfaceNotification>>,
    /// Framework callbacks (notifications, removal callbacks) running now; ended when the
    /// owner drops the module so none starts afterwards.
    callbacks: Arc<References>,
    /// The bound target's handle while the module is open (0 otherwise).
    handle: AtomicUsize,
    /// The module is closing because of a query-remove (see `before_close`).
    closing_for_query: AtomicBool,
    /// The module finished opening over its target (methods work) and has not begun closing.
    /// `handle` is set earlier, because the open itself needs it.
    opened: AtomicBool,
    /// `stream_start` calls in progress; ended while the module stops streaming to close.
    starts: References,
}

/// A `DeviceInterfaceTarget` module (see the [module documentation](self)).
pub struct DeviceInterfaceTarget(Module<DeviceInterfaceTargetNode>);

impl AsRef<Module<DeviceInterfaceTargetNode>> for DeviceInterfaceTarget {
    fn as_ref(&self) -> &Module<DeviceInterfaceTargetNode> {
        &self.0
    }
}

impl core::ops::Deref for DeviceInterfaceTarget {
    type Target = DeviceInterfaceTargetNode;

    fn deref(&self) -> &DeviceInterfaceTargetNode {
        &self.0
    }
}

impl DeviceInterfaceTarget {
    /// Creates the module on `device` (which owns the targets it opens). A dynamic module (the
    /// default attributes) needs `PnpRegisterWhen::Create` and registers before this returns;
    /// a static one is added to the device's `DeviceModules`. Invalid configurations fail with
    /// a typed error before anything is registered.
    pub fn create(
        device: Device,
        mut config: DeviceInterfaceTargetConfig,
        attributes: ModuleAttributes,
    ) -> Result<Self, ModuleError> {
        let notify = state_callbacks(
            config.on_state_change.take(),
            config.on_state_change_ex.take(),
        )?;
        let crt = core::mem::take(&mut config.continuous_request_target_config);
        if attributes.dynamic
            && crt.continuous_request_count > 0
            && crt.purge_and_start_target_in_d0_callbacks
        {
            return Err(ConfigError::D0CallbacksOnDynamicChild.into());
        }
        let passive = attributes.passive_level;
        let core = ModuleCore::new(
            "DeviceInterfaceTarget",
            config.module_open_option.open_option(),
            true,
            attributes,
        )?;
        let (child, mode) = Child::create(device, crt, passive, false)?;
        let pnp = WaitLock::create(Pnp {
            bound: None,
            reason: CloseReason::NotSet,
            close_after_remove_cancel: false,
            vetoed: false,
            next_id: 0,
        })?;
        let registration = WaitLock::create(None)?;
        let callbacks = Arc::new(References::new());
        callbacks.start();
        let guid = config.device_interface_target_guid;
        let access = OpenAccess {
            desired_access: config.open_mode.desired_access(),
            share_access: config.share_access.bits(),
        };
        let on_pnp_notification = config.on_pnp_notification.take();
        Ok(Self(Module::new_cyclic(|this| {
            DeviceInterfaceTargetNode {
                core,
                this: this.clone(),
                device,
                guid,
                access,
                mode,
                child,
                notify,
                on_pnp_notification,
                pnp,
                registration,
                callbacks,
                handle: AtomicUsize::new(0),
                closing_for_query: AtomicBool::new(false),
                opened: AtomicBool::new(false),
                starts: References::new(),
            }
        })?))
    }
}

impl Drop for DeviceInterfaceTarget {
    fn drop(&mut self) {
        self.0.shut_down();
    }
}

/// The target of an open module, usable while the guard lives (it holds a module reference,
/// so the module cannot close and delete the target meanwhile).
pub struct TargetGuard<'a> {
    _reference: ModuleReference<'a>,
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

impl DeviceInterfaceTargetNode {
    fn completion_option(&self) -> CompletionOption {
        if self.core.is_passive_level() {
            CompletionOption::Passive
        } else {
            CompletionOption::Dispatch
        }
    }

    /// Returns a client-owned output buffer to the child's pool
    /// (`DMF_DeviceInterfaceTarget_BufferPut`). `STATUS_INVALID_DEVICE_STATE` when closed,
    /// `STATUS_INVALID_PARAMETER` for a buffer of another module; either way the buffer goes
    /// back to the pool it came from.
    pub fn buffer_put(&self, buffer: OutputBuffer) -> Result<(), NtStatus> {
        let _reference = self.core.reference()?;
        self.child
            .stream()?
            .buffer_put(buffer)
            .map_err(|error| error.status())
    }

    /// The bound target behind a guard (`DMF_DeviceInterfaceTarget_Get` with the module
    /// reference DMF asks the client to take).
    pub fn get(&self) -> Result<TargetGuard<'_>, NtStatus> {
        let reference = self.core.reference()?;
        let handle = self.handle.load(Ordering::Acquire);
        if handle == 0 {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        Ok(TargetGuard {
            _reference: reference,
            target: IoTarget::borrowed(handle as WDFIOTARGET),
        })
    }

    /// The configured interface class (`DMF_DeviceInterfaceTarget_GuidGet`).
    #[must_use]
    pub fn guid_get(&self) -> GUID {
        self.guid
    }

    /// Single asynchronous request (`DMF_DeviceInterfaceTarget_Send`); the completion runs at
    /// the module's level.
    #[allow(clippy::too_many_arguments, reason = "DMF's Send parameters")]
    pub fn send(
        &self,
        input: &[u8],
        output_length: usize,
        request_type: RequestType,
        ioctl: u32,
        timeout_ms: u32,
        callback: Option<SendCompletion>,
    ) -> Result<(), NtStatus> {
        self.send_ex(
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

    /// Single asynchronous request with a per-call completion level, returning its cancel
    /// token (`DMF_DeviceInterfaceTarget_SendEx`).
    #[allow(clippy::too_many_arguments, reason = "DMF's SendEx parameters")]
    pub fn send_ex(
        &self,
        input: &[u8],
        output_length: usize,
        request_type: RequestType,
        ioctl: u32,
        timeout_ms: u32,
        completion_option: CompletionOption,
        callback: Option<SendCompletion>,
    ) -> Result<DmfRequest, NtStatus> {
        let reference = self.core.reference_held()?;
        self.child.send_ex(
            input,
            output_length,
            request_type,
            ioctl,
            timeout_ms,
            completion_option,
            holding(reference, callback),
        )
    }

    /// Cancels a request sent with `send_ex` (`DMF_DeviceInterfaceTarget_Cancel`): true only
    /// if it was still out and cancellation started.
    pub fn cancel(&self, token: DmfRequest) -> bool {
        let Ok(_reference) = self.core.reference() else {
            return false;
        };
        self.child.cancel(token)
    }

    /// Single synchronous request (`DMF_DeviceInterfaceTarget_SendSynchronously`,
    /// `PASSIVE_LEVEL`): bytes transferred, output copied into `output`.
    pub fn send_synchronously(
        &self,
        input: &[u8],
        output: &mut [u8],
        request_type: RequestType,
        ioctl: u32,
        timeout_ms: u32,
    ) -> Result<usize, NtStatus> {
        let _reference = self.core.reference()?;
        self.child
            .send_synchronously(input, output, request_type, ioctl, timeout_ms)
    }

    /// Starts streaming (`DMF_DeviceInterfaceTarget_StreamStart`).
    pub fn stream_start(&self) -> Result<(), NtStatus> {
        let _reference = self.core.reference()?;
        let stream = self.child.stream()?;
        // Closing stops streaming and waits for it: a start must not race that wait.
        self.starts.acquire()?;
        let result = stream.start();
        self.starts.release();
        result
    }

    /// Stops streaming and waits (`DMF_DeviceInterfaceTarget_StreamStop`, `PASSIVE_LEVEL`);
    /// nothing when the module is closed.
    pub fn stream_stop(&self) {
        let Ok(_reference) = self.core.reference() else {
            return;
        };
        if let Ok(stream) = self.child.stream() {
            stream.stop_and_wait();
        }
    }

    /// Whether a target is bound and the module open.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.opened.load(Ordering::Acquire) && self.handle.load(Ordering::Acquire) != 0
    }

    /// The streaming child, if the module has one (for statistics such as its pools).
    #[must_use]
    pub fn stream_child(&self) -> Option<&ContinuousRequestTarget> {
        self.child.stream().ok()
    }

    fn notify(&self, state: TargetState) -> Result<(), NtStatus> {
        match &self.notify {
            Notify::None => Ok(()),
            Notify::Plain(callback) => {
                callback(self, state);
                Ok(())
            }
            Notify::Vetoing(callback) => callback(self, state),
        }
    }

    /// DMF's `StreamStopAndModuleClose`; `for_query`: the target is closed for a query-remove
    /// (and kept for a reopen) instead of for good.
    fn stream_stop_and_module_close(&self, for_query: bool) {
        self.opened.store(false, Ordering::Release);
        self.closing_for_query.store(for_query, Ordering::Release);
        self.starts.end_and_wait();
        if let Ok(stream) = self.child.stream() {
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
        lifecycle::close(self);
    }

    /// Opens the module over the bound target and starts streaming (Automatic).
    fn module_open(&self, bound: &Bound) -> Result<(), NtStatus> {
        self.handle
            .store(bound.target.handle() as usize, Ordering::Release);
        if let Err(status) = lifecycle::open(self) {
            self.handle.store(0, Ordering::Release);
            return Err(status);
        }
        self.starts.start();
        if self.mode == Mode::Automatic
            && let Ok(stream) = self.child.stream()
        {
            let _ = stream.start();
        }
        self.opened.store(true, Ordering::Release);
        Ok(())
    }

    /// Disposes of the target as the close reason says (DMF's Close callback's second half;
    /// the module's close already closed it, for the query-remove or for good).
    fn dispose(pnp: &mut Pnp, reason: CloseReason) {
        match reason {
            CloseReason::QueryRemove => {
                if let Some(bound) = pnp.bound.as_mut() {
                    bound.open = false;
                }
            }
            CloseReason::NotificationUnregister
            | CloseReason::RemoveComplete
            | CloseReason::NotificationRemoval => drop(pnp.bound.take()),
            CloseReason::NotSet | CloseReason::Duplicate => {}
        }
    }

    fn arrival_flow(&self, name: &[u16]) {
        let mut pnp = self.pnp.lock();
        if pnp.bound.is_some() {
            return;
        }
        if let Some(callback) = &self.on_pnp_notification
            && !callback(self, name)
        {
            return;
        }
        let mut saved = Vec::new();
        if saved.try_reserve_exact(name.len()).is_err() {
            return;
        }
        saved.extend_from_slice(name);
        pnp.next_id += 1;
        let id = pnp.next_id;
        let events = TargetEvents {
            module: self.this.clone(),
            callbacks: Arc::clone(&self.callbacks),
            id,
        };
        let target = match IoTarget::create_with_handler(self.device, Box::new(events)) {
            Ok(target) => target,
            Err(status) => {
                dmf_trace!(
                    TraceLevel::Warning,
                    self.core.name(),
                    "arrival dropped: {status:?}"
                );
                return;
            }
        };
        if let Err(status) = target.open_by_name_with(name, self.access) {
            dmf_trace!(
                TraceLevel::Warning,
                self.core.name(),
                "arriving target did not open: {status:?}"
            );
            return;
        }
        if self.notify(TargetState::Open).is_err() {
            target.close();
            return;
        }
        pnp.reason = CloseReason::NotSet;
        pnp.close_after_remove_cancel = false;
        pnp.vetoed = false;
        let bound = Bound {
            target,
            name: saved,
            id,
            open: true,
        };
        if self.module_open(&bound).is_err() {
            bound.target.close();
            return;
        }
        pnp.bound = Some(bound);
    }

    fn removal_flow(&self, name: &[u16]) {
        let mut pnp = self.pnp.lock();
        let matches = pnp.bound.as_ref().is_some_and(|bound| bound.name == name);
        if !matches {
            return;
        }
        let open = pnp.bound.as_ref().is_some_and(|bound| bound.open);
        if pnp.reason_set(CloseReason::NotificationRemoval) == CloseReason::NotificationRemoval
            && open
        {
            self.stream_stop_and_module_close(false);
            Self::dispose(&mut pnp, CloseReason::NotificationRemoval);
        }
    }

    fn query_remove_flow(&self, id: u64) -> Result<(), NtStatus> {
        let mut pnp = self.pnp.lock();
        if !pnp.bound_is(id) {
            return Ok(());
        }
        if pnp.reason_set(CloseReason::QueryRemove) != CloseReason::QueryRemove {
            return Ok(());
        }
        if self.notify(TargetState::QueryRemove).is_err() {
            pnp.vetoed = true;
            return Err(NtStatus::UNSUCCESSFUL);
        }
        self.stream_stop_and_module_close(true);
        Self::dispose(&mut pnp, CloseReason::QueryRemove);
        Ok(())
    }

    fn remove_cancel_flow(&self, id: u64) {
        let mut pnp = self.pnp.lock();
        if !pnp.bound_is(id) {
            return;
        }
        let mut reopened = true;
        let closed = pnp.bound.as_ref().is_some_and(|bound| !bound.open);
        if closed {
            let restored = pnp.bound.as_mut().is_some_and(|bound| {
                if bound.target.reopen().is_err() {
                    return false;
                }
                bound.open = true;
                true
            });
            let opened = restored
                && pnp
                    .bound
                    .as_ref()
                    .is_some_and(|bound| self.module_open(bound).is_ok());
            if !opened {
                if let Some(bound) = pnp.bound.take() {
                    bound.target.close();
                }
                reopened = false;
            }
        }
        if reopened {
            let _ = self.notify(TargetState::QueryRemoveCancelled);
        }
        pnp.vetoed = false;
        if pnp.close_after_remove_cancel {
            pnp.reason = CloseReason::NotificationUnregister;
            pnp.close_after_remove_cancel = false;
            if reopened {
                let _ = self.notify(TargetState::Close);
                self.stream_stop_and_module_close(false);
                Self::dispose(&mut pnp, CloseReason::NotificationUnregister);
            }
        } else {
            pnp.reason = CloseReason::NotSet;
        }
    }

    fn remove_complete_flow(&self, id: u64) {
        let mut pnp = self.pnp.lock();
        if !pnp.bound_is(id) {
            return;
        }
        let reason = pnp.reason_set(CloseReason::RemoveComplete);
        match reason {
            CloseReason::RemoveComplete => {
                let _ = self.notify(TargetState::QueryRemoveComplete);
                self.stream_stop_and_module_close(false);
                Self::dispose(&mut pnp, CloseReason::RemoveComplete);
            }
            CloseReason::QueryRemove => {
                let _ = self.notify(TargetState::QueryRemoveComplete);
                // Closed during the query: delete it.
                drop(pnp.bound.take());
            }
            _ => {}
        }
    }

    fn unregister_flow(&self) {
        let mut pnp = self.pnp.lock();
        let open = pnp.bound.as_ref().is_some_and(|bound| bound.open);
        if pnp.reason_set(CloseReason::NotificationUnregister)
            == CloseReason::NotificationUnregister
            && open
        {
            let _ = self.notify(TargetState::Close);
            self.stream_stop_and_module_close(false);
            Self::dispose(&mut pnp, CloseReason::NotificationUnregister);
        }
    }

    /// The owner drops the module: unregister, let running framework callbacks finish and
    /// keep new ones out, then delete whatever target is still bound.
    fn shut_down(&self) {
        if self.core.swap_registered(false) {
            self.unregister_now();
        }
        self.callbacks.end_and_wait();
        let mut pnp = self.pnp.lock();
        if pnp.bound.as_ref().is_some_and(|bound| bound.open) {
            self.stream_stop_and_module_close(false);
        }
        // Deleting the target closes it if the module's close did not.
        drop(pnp.bound.take());
    }

    fn unregister_now(&self) {
        let registration = self.registration.lock().take();
        drop(registration);
        self.unregister_flow();
    }
}

impl ModuleNode for DeviceInterfaceTargetNode {
    fn core(&self) -> &ModuleCore {
        &self.core
    }

    fn child_count(&self) -> usize {
        1
    }

    fn child(&self, index: usize) -> Option<&dyn ModuleNode> {
        (index == 0).then(|| self.child.node())
    }

    fn open(&self) -> Result<(), NtStatus> {
        let handle = self.handle.load(Ordering::Acquire);
        if handle == 0 {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        self.child
            .io_target_set(&IoTarget::borrowed(handle as WDFIOTARGET))
    }

    fn before_close(&self) {
        // New references already fail. Close the target now (for the query-remove, so it can
        // be reopened, when that is why the module closes): that cancels what is still out,
        // single and synchronous sends whose references close waits for, and fails whatever a
        // call already in progress sends later.
        let handle = self.handle.load(Ordering::Acquire);
        if handle != 0 {
            let target = IoTarget::borrowed(handle as WDFIOTARGET);
            if self.closing_for_query.load(Ordering::Acquire) {
                target.close_for_query_remove();
            } else {
                target.close();
            }
        }
    }

    fn close(&self) {
        self.child.io_target_clear();
        self.handle.store(0, Ordering::Release);
    }

    fn notification_register(&self) -> Result<(), NtStatus> {
        self.pnp.lock().close_after_remove_cancel = false;
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

impl core::fmt::Debug for DeviceInterfaceTargetNode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceInterfaceTarget")
            .field("core", &self.core)
            .field("mode", &self.mode)
            .field("open", &self.is_open())
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for DeviceInterfaceTarget {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        (**self).fmt(f)
    }
}
