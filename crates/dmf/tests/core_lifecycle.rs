//! The module core: open options, parent/child order, PnP/power routing, failure unwinding,
//! references and the close wait.
#![cfg(not(windows))]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use dmf::core::{
    DeviceModules, Module, ModuleAttributes, ModuleCore, ModuleNode, ModuleState, OpenOption,
    OpenedDuring, PowerState, lifecycle,
};
use dmf::error::{ConfigError, ModuleError};
use dmf::wdf::NtStatus;
use wdk_sys::sim::Session;

type Log = Arc<Mutex<Vec<String>>>;

struct TestNode {
    core: ModuleCore,
    name: &'static str,
    log: Log,
    children: Vec<Module<TestNode>>,
    fail_open: AtomicBool,
    pnp: bool,
}

impl TestNode {
    fn record(&self, event: &str) {
        self.log
            .lock()
            .unwrap()
            .push(format!("{}:{event}", self.name));
    }
}

impl ModuleNode for TestNode {
    fn core(&self) -> &ModuleCore {
        &self.core
    }
    fn child_count(&self) -> usize {
        self.children.len()
    }
    fn child(&self, index: usize) -> Option<&dyn ModuleNode> {
        self.children.get(index).map(|c| &**c as &dyn ModuleNode)
    }
    fn has_pnp_callbacks(&self) -> bool {
        self.pnp
    }
    fn open(&self) -> Result<(), NtStatus> {
        // The module's own references fail inside its open callback.
        assert_eq!(
            self.core.reference().err(),
            Some(NtStatus::INVALID_DEVICE_STATE)
        );
        if self.fail_open.load(Ordering::SeqCst) {
            self.record("open-failed");
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        self.record("open");
        Ok(())
    }
    fn close(&self) {
        self.record("close");
    }
    fn notification_register(&self) -> Result<(), NtStatus> {
        self.record("register");
        Ok(())
    }
    fn notification_unregister(&self) {
        self.record("unregister");
    }
    fn prepare_hardware(&self) -> Result<(), NtStatus> {
        self.record("prepare");
        Ok(())
    }
    fn release_hardware(&self) {
        self.record("release");
    }
    fn d0_entry(&self, _previous: PowerState) -> Result<(), NtStatus> {
        self.record("d0entry");
        Ok(())
    }
    fn d0_exit(&self, _target: PowerState) {
        self.record("d0exit");
    }
    fn surprise_removal(&self) {
        self.record("surprise");
    }
    fn query_remove(&self) -> Result<(), NtStatus> {
        self.record("queryremove");
        Ok(())
    }
}

fn node(
    name: &'static str,
    option: OpenOption,
    log: &Log,
    children: Vec<Module<TestNode>>,
    dynamic: bool,
) -> TestNode {
    let mut attributes = ModuleAttributes::child_of(false, name);
    attributes.dynamic = dynamic;
    TestNode {
        core: ModuleCore::new("Test", option, true, attributes).expect("core"),
        name,
        log: Arc::clone(log),
        children,
        fail_open: AtomicBool::new(false),
        pnp: false,
    }
}

fn child(name: &'static str, option: OpenOption, log: &Log) -> Module<TestNode> {
    Module::new(node(name, option, log, Vec::new(), false)).expect("child")
}

fn take(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.lock().unwrap())
}

#[test]
fn dynamic_module_opens_children_first_and_closes_them_after_in_reverse() {
    let session = Session::begin();
    let log = Log::default();
    let children = vec![
        child("a", OpenOption::OpenCreate, &log),
        child("b", OpenOption::OpenCreate, &log),
    ];
    let parent =
        Module::new(node("p", OpenOption::OpenCreate, &log, children, true)).expect("created");
    assert_eq!(take(&log), ["a:open", "b:open", "p:open"]);
    assert_eq!(parent.core().state(), ModuleState::Opened);
    assert_eq!(parent.core().opened_during(), OpenedDuring::Create);
    drop(parent);
    assert_eq!(take(&log), ["p:close", "b:close", "a:close"]);
    session.end();
}

#[test]
fn failed_open_unwinds_what_was_opened() {
    let session = Session::begin();
    let log = Log::default();
    let failing = node("b", OpenOption::OpenCreate, &log, Vec::new(), false);
    failing.fail_open.store(true, Ordering::SeqCst);
    let children = vec![
        child("a", OpenOption::OpenCreate, &log),
        Module::new(failing).unwrap(),
        child("c", OpenOption::OpenCreate, &log),
    ];
    let result = Module::new(node("p", OpenOption::OpenCreate, &log, children, true));
    assert_eq!(
        result.err(),
        Some(ModuleError::Status(NtStatus::INSUFFICIENT_RESOURCES))
    );
    assert_eq!(take(&log), ["a:open", "b:open-failed", "a:close"]);

    // The parent's own open failing closes all its children, in reverse.
    let children = vec![
        child("a", OpenOption::OpenCreate, &log),
        child("b", OpenOption::OpenCreate, &log),
    ];
    let parent = node("p", OpenOption::OpenCreate, &log, children, true);
    parent.fail_open.store(true, Ordering::SeqCst);
    assert!(Module::new(parent).is_err());
    assert_eq!(
        take(&log),
        ["a:open", "b:open", "p:open-failed", "b:close", "a:close"]
    );
    session.end();
}

#[test]
fn configuration_rules_are_typed_errors() {
    let session = Session::begin();
    let log = Log::default();
    // A parent may not open earlier than its child.
    let children = vec![child("a", OpenOption::OpenD0Entry, &log)];
    let parent = Module::new(node(
        "p",
        OpenOption::OpenPrepareHardware,
        &log,
        children,
        false,
    ))
    .unwrap();
    let mut modules = DeviceModules::new();
    modules.add(&parent).unwrap();
    assert_eq!(
        modules.post_create(),
        Err(ModuleError::Config(ConfigError::ParentOpensBeforeChild))
    );
    drop(modules);
    drop(parent);
    // A dynamic module must open at create, and may not hook PnP.
    let attributes = ModuleAttributes::new();
    assert_eq!(
        ModuleCore::new("Test", OpenOption::OpenD0Entry, true, attributes).err(),
        Some(ModuleError::Config(ConfigError::DynamicModuleOpenOption))
    );
    let mut with_pnp = node("x", OpenOption::OpenCreate, &log, Vec::new(), true);
    with_pnp.pnp = true;
    assert_eq!(
        Module::new(with_pnp).err(),
        Some(ModuleError::Config(
            ConfigError::DynamicModuleWithPnpCallbacks
        ))
    );
    // Passive level refused by a dispatch-only module.
    assert_eq!(
        ModuleCore::new(
            "Thread",
            OpenOption::OpenCreate,
            false,
            ModuleAttributes::passive()
        )
        .err(),
        Some(ModuleError::Config(ConfigError::PassiveLevelNotSupported))
    );
    assert_eq!(
        ConfigError::PassiveLevelNotSupported.status(),
        NtStatus::INVALID_DEVICE_REQUEST
    );
    // A dynamic module cannot join a collection; a static one only once.
    let dynamic = Module::new(node("d", OpenOption::OpenCreate, &log, Vec::new(), true)).unwrap();
    let mut modules = DeviceModules::new();
    assert_eq!(
        modules.add(&dynamic),
        Err(ModuleError::Config(ConfigError::NotAStaticModule))
    );
    let fixed = Module::new(node("s", OpenOption::OpenCreate, &log, Vec::new(), false)).unwrap();
    modules.add(&fixed).unwrap();
    assert_eq!(
        modules.add(&fixed),
        Err(ModuleError::Config(ConfigError::NotAStaticModule))
    );
    session.end();
}

#[test]
#[allow(clippy::too_many_lines, reason = "one scenario through every callback")]
fn pnp_callbacks_follow_dmf_order() {
    let session = Session::begin();
    let log = Log::default();
    let tree = |name: &'static str, log: &Log| {
        let children = vec![
            child(
                if name == "p" { "p.a" } else { "q.a" },
                OpenOption::OpenPrepareHardware,
                log,
            ),
            child(
                if name == "p" { "p.b" } else { "q.b" },
                OpenOption::OpenD0Entry,
                log,
            ),
        ];
        Module::new(node(name, OpenOption::OpenD0Entry, log, children, false)).unwrap()
    };
    let p = tree("p", &log);
    let q = tree("q", &log);
    let notify = Module::new(node(
        "n",
        OpenOption::NotifyPrepareHardware,
        &log,
        Vec::new(),
        false,
    ))
    .unwrap();
    let mut modules = DeviceModules::new();
    modules.add(&p).unwrap();
    modules.add(&q).unwrap();
    modules.add(&notify).unwrap();
    modules.post_create().unwrap();
    assert!(take(&log).is_empty(), "nothing opens at create");

    modules.prepare_hardware().unwrap();
    assert_eq!(
        take(&log),
        [
            "p.a:open",
            "p.a:prepare",
            "p.b:prepare",
            "p:prepare",
            "q.a:open",
            "q.a:prepare",
            "q.b:prepare",
            "q:prepare",
            "n:register",
            "n:prepare"
        ]
    );
    modules.d0_entry(PowerState::D3Final).unwrap();
    assert_eq!(
        take(&log),
        [
            "p.a:d0entry",
            "p.b:open",
            "p.b:d0entry",
            "p:open",
            "p:d0entry",
            "q.a:d0entry",
            "q.b:open",
            "q.b:d0entry",
            "q:open",
            "q:d0entry",
            "n:d0entry"
        ]
    );
    modules.query_remove().unwrap();
    assert_eq!(
        take(&log),
        [
            "p:queryremove",
            "p.b:queryremove",
            "p.a:queryremove",
            "q:queryremove",
            "q.b:queryremove",
            "q.a:queryremove",
            "n:queryremove"
        ]
    );
    modules.surprise_removal();
    assert_eq!(
        take(&log),
        [
            "p:surprise",
            "p.b:surprise",
            "p.a:surprise",
            "q:surprise",
            "q.b:surprise",
            "q.a:surprise",
            "n:surprise"
        ]
    );
    modules.d0_exit(PowerState::D3Final);
    assert_eq!(
        take(&log),
        [
            "n:d0exit",
            "q:d0exit",
            "q:close",
            "q.a:d0exit",
            "q.b:d0exit",
            "q.b:close",
            "p:d0exit",
            "p:close",
            "p.a:d0exit",
            "p.b:d0exit",
            "p.b:close"
        ]
    );
    modules.release_hardware();
    assert_eq!(
        take(&log),
        [
            "n:release",
            "n:unregister",
            "q:release",
            "q.a:release",
            "q.a:close",
            "q.b:release",
            "p:release",
            "p.a:release",
            "p.a:close",
            "p.b:release"
        ]
    );
    modules.destroy();
    assert!(take(&log).is_empty(), "everything was already closed");
    session.end();
}

#[test]
fn prepare_hardware_failure_closes_what_it_opened() {
    let session = Session::begin();
    let log = Log::default();
    let first = Module::new(node(
        "a",
        OpenOption::OpenPrepareHardware,
        &log,
        Vec::new(),
        false,
    ))
    .unwrap();
    let second = node(
        "b",
        OpenOption::OpenPrepareHardware,
        &log,
        Vec::new(),
        false,
    );
    second.fail_open.store(true, Ordering::SeqCst);
    let second = Module::new(second).unwrap();
    let mut modules = DeviceModules::new();
    modules.add(&first).unwrap();
    modules.add(&second).unwrap();
    assert_eq!(
        modules.prepare_hardware(),
        Err(NtStatus::INSUFFICIENT_RESOURCES)
    );
    assert_eq!(
        take(&log),
        ["a:open", "a:prepare", "b:open-failed", "a:close"]
    );
    session.end();
}

#[test]
fn system_power_up_option_opens_from_d3final_only() {
    let session = Session::begin();
    let log = Log::default();
    let m = Module::new(node(
        "s",
        OpenOption::OpenD0EntrySystemPowerUp,
        &log,
        Vec::new(),
        false,
    ))
    .unwrap();
    let mut modules = DeviceModules::new();
    modules.add(&m).unwrap();
    modules.d0_entry(PowerState::D3Final).unwrap();
    modules.d0_exit(PowerState::D3);
    modules.d0_entry(PowerState::D3).unwrap();
    modules.d0_exit(PowerState::D3Final);
    assert_eq!(
        take(&log),
        [
            "s:open",
            "s:d0entry",
            "s:d0exit",
            "s:d0entry",
            "s:d0exit",
            "s:close"
        ]
    );
    session.end();
}

#[test]
fn references_fail_while_closing_and_close_waits_for_them() {
    let session = Session::begin();
    let log = Log::default();
    let module =
        Arc::new(Module::new(node("r", OpenOption::OpenCreate, &log, Vec::new(), true)).unwrap());
    let held = module.core().reference().expect("open module").into_held();
    let guard = module.core().reference().expect("second reference");
    assert_eq!(module.core().references_held(), 2);
    drop(guard);
    assert_eq!(module.core().references_held(), 1);

    let (closed_tx, closed_rx) = mpsc::channel();
    let closer = {
        let module = Arc::clone(&module);
        std::thread::spawn(move || {
            lifecycle::close(&**module);
            closed_tx.send(()).unwrap();
        })
    };
    // Close has begun: new references fail; close is still waiting for `held`.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while module.core().reference().is_ok() {
        assert!(std::time::Instant::now() < deadline, "close never began");
        std::thread::yield_now();
    }
    assert_eq!(
        module.core().reference().err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    assert!(
        closed_rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "close must wait for the held reference"
    );
    assert!(!take(&log).contains(&"r:close".to_string()));
    // Released from another thread at DISPATCH_LEVEL, as a completion routine would.
    std::thread::spawn(move || {
        wdk_sys::sim::at_irql(wdk_sys::DISPATCH_LEVEL as u8, || held.release());
    })
    .join()
    .unwrap();
    closed_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("close finished after the release");
    closer.join().unwrap();
    assert_eq!(take(&log), ["r:close"]);
    assert_eq!(module.core().state(), ModuleState::Closed);
    // Reopen works and references work again.
    lifecycle::open(&**module).unwrap();
    assert!(module.core().reference().is_ok());
    session.end();
}

#[test]
fn post_open_and_pre_close_hooks_run_once() {
    let session = Session::begin();
    let log = Log::default();
    let mut attributes = ModuleAttributes::new();
    let l1 = Arc::clone(&log);
    attributes.post_open = Some(Box::new(move || {
        l1.lock().unwrap().push("post_open".into());
    }));
    let l2 = Arc::clone(&log);
    attributes.pre_close = Some(Box::new(move || {
        l2.lock().unwrap().push("pre_close".into());
    }));
    let n = TestNode {
        core: ModuleCore::new("Test", OpenOption::OpenCreate, true, attributes).unwrap(),
        name: "h",
        log: Arc::clone(&log),
        children: Vec::new(),
        fail_open: AtomicBool::new(false),
        pnp: false,
    };
    let m = Module::new(n).unwrap();
    lifecycle::close(&*m);
    lifecycle::close(&*m);
    drop(m);
    assert_eq!(take(&log), ["h:open", "post_open", "pre_close", "h:close"]);
    session.end();
}

#[test]
fn close_never_overlaps_a_method_in_flight_under_contention() {
    use std::sync::atomic::AtomicI32;
    let session = Session::begin();
    let log = Log::default();
    let module =
        Arc::new(Module::new(node("c", OpenOption::OpenCreate, &log, Vec::new(), true)).unwrap());
    let in_flight = Arc::new(AtomicI32::new(0));
    let closed = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (module, in_flight, closed) = (
                Arc::clone(&module),
                Arc::clone(&in_flight),
                Arc::clone(&closed),
            );
            std::thread::spawn(move || {
                let mut successes = 0u32;
                loop {
                    match module.core().reference_held() {
                        Ok(reference) => {
                            in_flight.fetch_add(1, Ordering::SeqCst);
                            assert!(
                                !closed.load(Ordering::SeqCst),
                                "a method ran after close finished"
                            );
                            std::thread::yield_now();
                            in_flight.fetch_sub(1, Ordering::SeqCst);
                            drop(reference);
                            successes += 1;
                        }
                        Err(status) => {
                            assert_eq!(status, NtStatus::INVALID_DEVICE_STATE);
                            return successes;
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20)); // let the workers contend (not synchronization)
    lifecycle::close(&**module);
    assert_eq!(
        in_flight.load(Ordering::SeqCst),
        0,
        "close returned while a method was in flight"
    );
    closed.store(true, Ordering::SeqCst);
    let total: u32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(total > 0);
    assert_eq!(module.core().references_held(), 0);
    assert_eq!(take(&log), ["c:open", "c:close"]);
    drop(module);
    session.end();
}
