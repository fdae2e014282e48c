//! A tour of the framework layer on the KMDF simulation: framework memory, a spin lock shared by
//! system threads, a periodic DPC timer, a passive-level work item and the debug output, with the
//! simulation's verifier watching. Prints what happened and exits non-zero if anything was off.

#[cfg(windows)]
fn main() {
    eprintln!("sim-tour runs the KMDF simulation; on Windows build and deploy the drivers instead");
}

#[cfg(not(windows))]
fn main() -> std::process::ExitCode {
    tour::run()
}

#[cfg(not(windows))]
mod tour {
    use std::process::ExitCode;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    use dmf::dmf_trace;
    use dmf::wdf::event::{Event, EventKind};
    use dmf::wdf::spin_lock::SpinLock;
    use dmf::wdf::thread::SystemThread;
    use dmf::wdf::timer::{Timer, TimerConfig};
    use dmf::wdf::trace::{self, TraceLevel};
    use dmf::wdf::work_item::WorkItem;
    use dmf::wdf::{Memory, NtStatus, PoolType};
    use wdk_sys::sim::{self, Session};

    const THREADS: u64 = 4;
    const INCREMENTS: u64 = 25_000;
    const TICKS: u32 = 5;

    pub fn run() -> ExitCode {
        let session = Session::begin();
        println!(
            "kmdf-sim session started (scheduling seed {})",
            session.seed()
        );
        let result = tour();
        session.wait_idle();
        let counters = sim::counters();
        println!(
            "objects created: {}, allocations: {}, still alive: {}",
            counters.objects_created, counters.allocations, counters.live_objects
        );
        match result {
            Ok(()) => {
                // Ending the session checks for leaks and verifier reports; it panics if any.
                session.end();
                println!("verifier: no reports; every object was deleted");
                ExitCode::SUCCESS
            }
            Err(status) => {
                eprintln!("tour failed: {status}");
                ExitCode::FAILURE
            }
        }
    }

    fn tour() -> Result<(), NtStatus> {
        // A memory object stands in for the device that would parent timers and work items.
        let mut parent = Memory::create(64, PoolType::NonPaged, None)?;
        parent.copy_from(0, b"dmf")?;
        let mut head = [0u8; 3];
        parent.copy_to(0, &mut head)?;
        println!(
            "framework memory: {} bytes, starts with {:?}",
            parent.len(),
            String::from_utf8_lossy(&head)
        );

        let counter = Arc::new(SpinLock::create(0u64)?);
        let started = Instant::now();
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let counter = Arc::clone(&counter);
                SystemThread::spawn(move || {
                    for _ in 0..INCREMENTS {
                        *counter.lock() += 1;
                    }
                })
            })
            .collect::<Result<_, _>>()?;
        for thread in threads {
            thread.join()?;
        }
        let total = *counter.lock();
        println!(
            "spin lock: {THREADS} system threads added {total} (expected {}) in {:?}",
            THREADS * INCREMENTS,
            started.elapsed()
        );
        if total != THREADS * INCREMENTS {
            return Err(NtStatus::INTERNAL_ERROR);
        }

        let ticks = Arc::new(AtomicU32::new(0));
        let done = Arc::new(Event::new(EventKind::Notification, false));
        let timer = {
            let (ticks, done) = (Arc::clone(&ticks), Arc::clone(&done));
            let config = TimerConfig {
                period: Some(Duration::from_millis(10)),
                ..TimerConfig::default()
            };
            Timer::new(parent.handle().cast(), config, move || {
                if ticks.fetch_add(1, Ordering::SeqCst) + 1 == TICKS {
                    done.set();
                }
            })?
        };
        let started = Instant::now();
        timer.start(Duration::from_millis(10));
        let fired = done.wait_timeout(Duration::from_secs(5));
        timer.stop(true);
        println!(
            "periodic timer: {} ticks at DISPATCH_LEVEL in {:?}",
            ticks.load(Ordering::SeqCst),
            started.elapsed()
        );
        if !fired {
            return Err(NtStatus::IO_TIMEOUT);
        }

        let runs = Arc::new(AtomicU32::new(0));
        let work = {
            let runs = Arc::clone(&runs);
            WorkItem::new(parent.handle().cast(), move || {
                runs.fetch_add(1, Ordering::SeqCst);
            })?
        };
        work.enqueue();
        work.flush();
        println!(
            "work item: ran {} time(s) at PASSIVE_LEVEL",
            runs.load(Ordering::SeqCst)
        );

        trace::set_level(TraceLevel::Info);
        dmf_trace!(
            TraceLevel::Info,
            "SimTour",
            "tour finished with {} ticks",
            ticks.load(Ordering::SeqCst)
        );
        let output = sim::take_debug_output();
        println!("debug output captured: {output:?}");

        drop(work);
        drop(timer);
        drop(parent);
        Ok(())
    }
}
