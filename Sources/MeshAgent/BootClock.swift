#if canImport(Glibc)
import Glibc
#endif
import MeshCore

/// The machine's boot-time clock (CLOCK_BOOTTIME: monotonic, counts suspend, the same in every
/// process). Raft's packet clocks and job leases use it, so that the values an agent stamped
/// before a restart still compare with those after it, and a supervisor reads the same clock as
/// the agent that renews its lease.
public enum BootClock {
    public static func now() -> Instant {
        var ts = timespec()
        clock_gettime(CLOCK_BOOTTIME, &ts)
        return Instant(nanoseconds: Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec))
    }
}
