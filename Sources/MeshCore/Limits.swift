/// The bounds on every number and size that reaches the mesh from outside: the CLI, the wire and
/// the log. A value beyond them is refused where it enters (the CLI says so, exit 64; the agent
/// answers a bad request) and again when a log entry is applied (the entry is recorded as
/// refused and changes nothing), so arithmetic on what passed never overflows.
///
/// The bounds are far beyond any real use and far below where Int64 arithmetic on them (seconds
/// into nanoseconds, sums over a node's jobs) could overflow.
public enum Limits {
    // MARK: Raft

    /// The largest term or log index a node accepts from anyone, or reaches itself: `term + 1`
    /// and `index + 1` never overflow. At a million elections or entries a second it lasts
    /// 146,000 years.
    public static let maxTerm: UInt64 = 1 << 62
    public static let maxIndex: UInt64 = 1 << 62
    /// How far above every term a node has seen a message's term may be. Terms rise by one per
    /// election; 2^32 elections at one a millisecond take 50 days, far more than a node can miss
    /// while it still holds a log worth catching up. A message beyond it is dropped (which Raft
    /// tolerates: messages may always be lost).
    public static let maxTermStep: UInt64 = 1 << 32

    /// The largest incarnation a member may announce (a refutation adds one).
    public static let maxIncarnation: UInt64 = 1 << 62

    // MARK: Jobs

    /// A job's lease: 30 days.
    public static let maxLeaseSeconds: UInt64 = 30 * 86_400
    /// A job's timeout: 366 days.
    public static let maxTimeoutSeconds: UInt64 = 366 * 86_400
    /// A drain's deadline: 366 days.
    public static let maxDrainDeadlineMillis: Int64 = 366 * 86_400 * 1000
    public static let maxRetries = 100
    public static let maxJobSlots = 10_000
    public static let maxGPUs = 1024
    public static let maxCPUs = 1 << 20
    /// 1 EiB in MiB.
    public static let maxMemoryMB = 1 << 40
    /// The slots one node may offer.
    public static let maxNodeSlots = 100_000
    /// Job and sweep ids: creating one past this is refused.
    public static let maxID: UInt64 = 1 << 62
    public static let maxArguments = 10_000
    /// One argument, environment value, label, reason or name.
    public static let maxText = 64 << 10
    public static let maxEnvironment = 1000
    public static let maxLabels = 100
    public static let maxResultPatterns = 1000
    public static let maxDependencies = 10_000
    public static let maxParameters = 1000
    /// The uncommitted diff a submit carries (the CLI cuts it at 256 KiB).
    public static let maxDiff = 512 << 10
    /// Jobs one cancel, retry, hold, release or requeue names.
    public static let maxJobsPerChange = 100_000
    public static let maxAssignments = 100_000
    /// The most jobs one plan may make (`max_plan_jobs` cannot go higher).
    public static let maxPlanJobs = 1_000_000
    /// Axes and stages of a plan, values of one planned job.
    public static let maxPlanNames = 1000

    // MARK: Results and reports

    /// Result files an attempt may report, whatever `max_result_files` says.
    public static let maxResultFiles = 100_000
    /// The default of `max_result_files`.
    public static let defaultResultFiles = 10_000
    /// The bytes of a report's results manifest (paths, hashes): a report is one log entry.
    public static let maxManifestBytes = 4 << 20
    /// A result's path (PATH_MAX).
    public static let maxPath = 4096
    /// Refused result paths listed with an attempt (the rest are counted).
    public static let maxRefused = 100
    /// Holders named with a blob.
    public static let maxHolders = 1000

    /// Whether a text from outside is within `maxText` (or `limit`) bytes.
    public static func fits(_ s: String, _ limit: Int = maxText) -> Bool { s.utf8.count <= limit }
}
