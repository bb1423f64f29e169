//! Scheduling policy of the calling thread.

use std::io;

use super::syscall;

/// Puts the calling thread under `SCHED_BATCH`: it keeps its fair share of CPU, but when it
/// wakes it does not preempt the task running on the CPU it wakes on; it runs when that task
/// blocks, its slice ends, or another CPU is idle.
pub(crate) fn set_batch() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param that lives across the call; pid 0 names the
    // calling thread (Linux schedules threads, so only this one changes), and lowering to
    // SCHED_BATCH with priority 0 needs no privilege.
    unsafe { syscall!(sched_setscheduler(0, libc::SCHED_BATCH, &param)) }.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_calling_thread_changes() {
        // SAFETY: no arguments; pid 0 is the calling thread.
        let before = unsafe { libc::sched_getscheduler(0) };
        std::thread::spawn(|| {
            set_batch().unwrap();
            // SAFETY: as above.
            assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_BATCH);
        })
        .join()
        .unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { libc::sched_getscheduler(0) }, before);
    }
}
