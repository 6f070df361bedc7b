//! Proc and actor meshes across real processes: this test binary re-executes
//! itself as the workers, so it has its own `main` (calling
//! `monarch::bootstrap()` first) and runs the scenarios with libtest-mimic.
//!
//! Run alone with `cargo test --test mesh`.
//!
//! The scenarios are grouped by what they exercise: [`adverbs`], [`ordering`]
//! (and cast trees), [`faults`], the [`contracts`] of delivery, stopping and
//! errors, and [`programs`] that run this binary as a program of its own.

mod actors;
mod adverbs;
mod contracts;
mod faults;
mod ordering;
mod programs;
mod support;

use std::sync::LazyLock;

use libtest_mimic::{Arguments, Failed, Trial};

use adverbs::*;
use contracts::*;
use faults::*;
use ordering::*;
use programs::*;

/// One runtime for every scenario: the process's transport lives on it.
pub(crate) static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
});

fn main() {
    if std::env::var("MESH_TEST_NO_BOOTSTRAP").is_ok() {
        run_without_bootstrap();
    }
    monarch::bootstrap();
    if let Ok(addr) = std::env::var("MESH_TEST_INTRUDE") {
        let result = RUNTIME.block_on(monarch::testing::probe_as_intruder(&addr));
        match result {
            Ok(()) => println!("accepted"),
            Err(reason) => println!("refused: {reason}"),
        }
        std::process::exit(0);
    }
    if std::env::var("MESH_TEST_CONTROLLER").is_ok() {
        run_controller();
    }
    if std::env::var("MESH_TEST_UNHANDLED").is_ok() {
        run_unhandled();
    }
    if std::env::var("MESH_TEST_SINGLETON").is_ok() {
        run_singleton();
    }
    if std::env::var("MESH_TEST_SHUTDOWN").is_ok() {
        run_shutdown();
    }
    // Quick heartbeats, so a hung worker is noticed within the test's patience.
    std::env::set_var("MONARCH_HEARTBEAT_TIMEOUT_MS", "1500");

    type Scenario =
        fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Failed>>>>;
    let scenarios: Vec<(&str, Scenario)> = vec![
        ("every_adverb_on_a_2x2_mesh", || {
            Box::pin(every_adverb_on_a_2x2_mesh("same-host"))
        }),
        ("every_adverb_on_a_2x2_mesh_over_quic", || {
            Box::pin(every_adverb_on_a_2x2_mesh("quic"))
        }),
        ("slices_and_refs_travel", || {
            Box::pin(slices_and_refs_travel())
        }),
        ("ordering_across_processes", || {
            Box::pin(ordering_across_processes("same-host"))
        }),
        ("ordering_across_processes_over_quic", || {
            Box::pin(ordering_across_processes("quic"))
        }),
        ("casts_through_a_tree", || {
            Box::pin(casts_through_a_tree("same-host"))
        }),
        ("casts_through_a_tree_over_quic", || {
            Box::pin(casts_through_a_tree("quic"))
        }),
        ("a_lost_relay_holds_nothing_up", || {
            Box::pin(a_lost_relay_holds_nothing_up())
        }),
        ("large_bytes_argument", || {
            Box::pin(large_bytes_argument("same-host"))
        }),
        ("large_bytes_argument_over_quic", || {
            Box::pin(large_bytes_argument("quic"))
        }),
        ("killed_worker_fails_calls_and_reports", || {
            Box::pin(killed_worker_fails_calls_and_reports())
        }),
        ("stopped_worker_is_noticed_by_heartbeat", || {
            Box::pin(stopped_worker_is_noticed_by_heartbeat())
        }),
        ("an_actor_owns_a_mesh_and_hears_of_its_failures", || {
            Box::pin(an_actor_owns_a_mesh_and_hears_of_its_failures())
        }),
        ("supervision_event_from_a_remote_panic", || {
            Box::pin(supervision_event_from_a_remote_panic())
        }),
        ("intruders_and_garbage_are_refused", || {
            Box::pin(intruders_and_garbage_are_refused())
        }),
        ("default_fault_hook_reports_and_exits", || {
            Box::pin(default_fault_hook_reports_and_exits())
        }),
        ("a_worker_without_bootstrap_fails_fast", || {
            Box::pin(a_worker_without_bootstrap_fails_fast())
        }),
        ("controller_killed_takes_workers_along", || {
            Box::pin(controller_killed_takes_workers_along())
        }),
        ("singletons_fail_loudly_and_respawn", || {
            Box::pin(singletons_fail_loudly_and_respawn())
        }),
        ("shutdown_ends_every_worker", || {
            Box::pin(shutdown_ends_every_worker())
        }),
        ("ports_in_spawn_params_and_tells_that_bounce", || {
            Box::pin(ports_in_spawn_params_and_tells_that_bounce())
        }),
        (
            "owned_meshes_stop_with_their_owner_and_only_owners_stop",
            || Box::pin(owned_meshes_stop_with_their_owner_and_only_owners_stop()),
        ),
        ("spawn_and_stop_are_bounded_whatever_init_does", || {
            Box::pin(spawn_and_stop_are_bounded_whatever_init_does())
        }),
        ("a_panicking_fault_hook_harms_nothing", || {
            Box::pin(a_panicking_fault_hook_harms_nothing())
        }),
        ("exit_statuses_reach_callers", || {
            Box::pin(exit_statuses_reach_callers())
        }),
        ("oversized_messages_and_replies_say_so", || {
            Box::pin(oversized_messages_and_replies_say_so())
        }),
        ("errors_keep_their_causes_across_processes", || {
            Box::pin(errors_keep_their_causes_across_processes())
        }),
        ("context_slices_and_reduce", || {
            Box::pin(context_slices_and_reduce())
        }),
    ];
    let soaks: Vec<(&str, Scenario)> = vec![("soak_tree_casts_with_losses", || {
        Box::pin(soak_tree_casts_with_losses())
    })];
    let trials = scenarios
        .into_iter()
        .map(|(name, scenario)| Trial::test(name, move || RUNTIME.block_on(scenario())))
        .chain(soaks.into_iter().map(|(name, scenario)| {
            Trial::test(name, move || RUNTIME.block_on(scenario())).with_ignored_flag(true)
        }))
        .collect();
    libtest_mimic::run(&Arguments::from_args(), trials).exit();
}
