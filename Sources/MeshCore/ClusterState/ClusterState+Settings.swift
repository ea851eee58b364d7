/// The mesh settings (`mesh set KEY VALUE`): one catalogue that the CLI, the agent and the state
/// machine all check values against, and typed reads that never trust a stored value blindly.
///
/// A setting is replicated through the log, so a value that crashed whoever read it would crash
/// every coordinator in turn (a `Duration` made from `inf` traps). Values are checked where a
/// client hands them in (the CLI, the agent, again when the entry is applied) and read back
/// clamped to their bounds.
extension ClusterState {
    public enum Setting: String, CaseIterable, Sendable {
        case maxVoters = "max_voters"
        case voterGraceSeconds = "voter_grace_seconds"
        case leaseSeconds = "lease_seconds"
        case leaseGraceSeconds = "lease_grace_seconds"
        case killGraceSeconds = "kill_grace_seconds"
        case maxPlanJobs = "max_plan_jobs"
        case quarantineAfter = "quarantine_after"
        case quarantineCanarySeconds = "quarantine_canary_seconds"
        case scaleUp = "scale_up"
        case scaleUpAfterSeconds = "scale_up_after_seconds"
        case scaleUpMax = "scale_up_max"
        case scaleUpPauseSeconds = "scale_up_pause_seconds"
        case scaleUpTimeoutSeconds = "scale_up_timeout_seconds"
        case maxResultFiles = "max_result_files"

        /// What kind of value it takes, and its bounds.
        public enum Kind: Sendable, Equatable {
            case whole(ClosedRange<Int>)
            case seconds(ClosedRange<Double>)
            case command
        }

        /// The longest a duration setting may be: about three years.
        public static let maxSeconds = 1e8

        public var kind: Kind {
            switch self {
            case .maxVoters: .whole(1...9)
            case .maxPlanJobs: .whole(1...Limits.maxPlanJobs)
            case .maxResultFiles: .whole(1...Limits.maxResultFiles)
            case .quarantineAfter: .whole(0...1000)
            case .scaleUpMax: .whole(0...1000)
            case .voterGraceSeconds, .leaseSeconds: .seconds(1...Self.maxSeconds)
            case .scaleUpTimeoutSeconds: .seconds(1...Self.maxSeconds)
            case .leaseGraceSeconds, .killGraceSeconds, .quarantineCanarySeconds, .scaleUpAfterSeconds, .scaleUpPauseSeconds:
                .seconds(0...Self.maxSeconds)
            case .scaleUp: .command
            }
        }

        /// One line for `mesh set --help`.
        public var help: String {
            switch self {
            case .maxVoters: "how many voters the coordinator keeps (odd, default 5)"
            case .voterGraceSeconds: "how long a voter may be dead before it is replaced (default 30)"
            case .leaseSeconds: "how long a worker may be out of touch with the coordinator before it stops its jobs (default 60)"
            case .leaseGraceSeconds: "added to the lease before the coordinator runs such jobs elsewhere (default 15)"
            case .killGraceSeconds: "between SIGTERM and SIGKILL when a job is stopped (default 10)"
            case .maxPlanJobs: "the most jobs one plan or matrix may make (default 10000)"
            case .quarantineAfter: "cordon a node whose last N attempts failed to start (workspace, code, supervisor: the machine's fault), 0: never (default 3)"
            case .quarantineCanarySeconds: "before the first canary job that tests a quarantined node, doubled after each that failed (default 30); one that succeeds re-admits it"
            case .scaleUp: "a shell command the coordinator runs when jobs have waited too long for capacity (empty: none); its environment: MESH_TOKEN, MESH_WAITING, MESH_JOB, MESH_CLASS, MESH_SLOTS, MESH_GPUS"
            case .scaleUpAfterSeconds: "how long a job waits for capacity before scale_up runs (default 60)"
            case .scaleUpMax: "scale-ups in flight at once: each from its start until a new node registers, its command fails, or scale_up_timeout_seconds pass (default 1)"
            case .scaleUpPauseSeconds: "between the starts of two scale_up commands (default 120)"
            case .maxResultFiles: "the most result files one attempt may keep; a job that names more fails with the reason (default 10000)"
            case .scaleUpTimeoutSeconds: "a scale-up in flight no longer counts after this long, and its command, if still running, is stopped (default 600)"
            }
        }

        /// Why `value` is not a valid value of this setting, or nil if it is.
        public func problem(_ value: String) -> String? {
            switch kind {
            case .whole(let range):
                guard let n = Int(value), range.contains(n) else {
                    return "\(rawValue) is a whole number from \(range.lowerBound) to \(range.upperBound), not '\(value)'"
                }
                if self == .maxVoters, n % 2 == 0 { return "max_voters is odd (a majority of an even number of voters is no safer than one voter fewer)" }
                return nil
            case .seconds(let range):
                guard let s = Double(value), s.isFinite, range.contains(s) else {
                    return "\(rawValue) is a number of seconds from \(Self.format(range.lowerBound)) to \(Self.format(range.upperBound)), not '\(value)'"
                }
                return nil
            case .command:
                guard value.utf8.count <= 4096 else { return "\(rawValue) is a shell command of at most 4 KiB" }
                guard !value.utf8.contains(0) else { return "\(rawValue) cannot contain a NUL byte" }
                return nil
            }
        }

        private static func format(_ d: Double) -> String {
            d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : "\(d)"
        }
    }

    /// Why `key = value` cannot be set, or nil if it can. Keys outside the catalogue are opaque
    /// to the mesh (`mesh set` refuses them; tests and the simulator write their own).
    public static func settingProblem(key: String, value: String) -> String? {
        Setting(rawValue: key)?.problem(value)
    }

    /// A whole-number setting, nil if it is not set (or holds a value it should never have had).
    public func setting(_ s: Setting) -> Int? {
        guard case .whole(let range) = s.kind, let v = settings[s.rawValue].flatMap(Int.init) else { return nil }
        return Swift.min(Swift.max(v, range.lowerBound), range.upperBound)
    }

    /// A duration setting in seconds, clamped to its bounds; nil if it is not set or not a number.
    public func seconds(_ s: Setting) -> Double? {
        guard case .seconds(let range) = s.kind, let v = settings[s.rawValue].flatMap(Double.init), !v.isNaN else { return nil }
        return Swift.min(Swift.max(v, range.lowerBound), range.upperBound)
    }

    /// A duration setting, clamped to its bounds; nil if it is not set.
    public func duration(_ s: Setting) -> Duration? {
        seconds(s).map { Duration.seconds(double: $0) }
    }

    /// A text setting (empty if not set).
    public func text(_ s: Setting) -> String { settings[s.rawValue] ?? "" }
}
