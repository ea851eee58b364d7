/// One node's side of running jobs. It learns its assignments from the replicated state (every
/// node applies the log), starts and stops attempts, and reports how they went. The lease is
/// enforced next to each attempt (by its supervisor, which the shell renews while the node hears
/// from a coordinator); this decides only what to start, stop and report.
public struct Worker: Sendable {
    public struct Key: Hashable, Sendable, Comparable, CustomStringConvertible {
        public var job: JobID
        public var attempt: Int
        public init(job: JobID, attempt: Int) {
            self.job = job
            self.attempt = attempt
        }
        public static func < (a: Key, b: Key) -> Bool { (a.job, a.attempt) < (b.job, b.attempt) }
        public var description: String { "\(job).\(attempt)" }
    }

    public enum StopReason: String, Sendable {
        case cancelled
        /// The coordinator gave up on this attempt (its node was out of touch too long).
        case superseded
    }

    public enum Directive: Sendable, Equatable {
        case start(Key, JobSpec, Provenance, gpus: [Int])
        case stop(Key, StopReason)
        /// Send this write to the coordinator until it is applied (or refused as stale).
        case report(Key, ClusterState.Command)
    }

    enum Phase: Sendable, Equatable {
        case starting, running, stopping
        /// Ended here; waiting for the report to be applied.
        case ended
    }

    public let node: NodeID
    private var attempts: [Key: Phase] = [:]
    /// Attempts that ended here, kept until the log shows the report (so they are not restarted).
    private var finished: Set<Key> = []

    public init(node: NodeID) { self.node = node }

    /// Attempts this node is running (or starting, or stopping).
    public var running: [Key] { attempts.filter { $0.value != .ended }.map(\.key).sorted() }

    /// After the state changed (entries applied): start what is ours and new, stop what is ours
    /// and no longer wanted.
    public mutating func sync(with state: ClusterState, at now: Int64 = 0) -> [Directive] {
        var out: [Directive] = []
        for job in state.activeJobs {
            guard let a = job.current, a.node == node else { continue }
            let key = Key(job: job.id, attempt: a.number)
            guard attempts[key] == nil, !finished.contains(key) else { continue }
            if job.cancelRequested || job.requeueRequested {
                // Cancelled (or requeued) before it started here: nothing to stop, but the log must hear it ended.
                attempts[key] = .starting
                out += ended(key, outcome: .cancelled, at: now)
            } else {
                attempts[key] = .starting
                out.append(.start(key, job.spec, job.provenance, gpus: a.gpus))
            }
        }
        for (key, phase) in attempts.sorted(by: { $0.key < $1.key }) where phase == .starting || phase == .running {
            guard let job = state.jobs[key.job] else { continue }
            if job.current?.number != key.attempt || job.current?.node != node || !job.state.isActive {
                if state.fencingDisabled, !job.cancelRequested { continue }
                attempts[key] = .stopping
                out.append(.stop(key, .superseded))
            } else if job.cancelRequested || job.requeueRequested {
                // (A requeue stops it as a cancel does; the state puts the job back in the queue.)
                attempts[key] = .stopping
                out.append(.stop(key, .cancelled))
            }
        }
        // A report the log has taken (or that no longer matters) needs no more memory.
        for key in finished {
            guard let job = state.jobs[key.job] else { finished.remove(key); continue }
            if job.current?.number != key.attempt || !job.state.isActive {
                finished.remove(key)
                attempts[key] = nil
            }
        }
        return out
    }

    /// An attempt found running after the agent restarted (its supervisor outlived the agent).
    public mutating func adopt(_ key: Key) {
        attempts[key] = .running
    }

    public mutating func started(_ key: Key, at: Int64) -> [Directive] {
        guard attempts[key] == .starting else { return [] }
        attempts[key] = .running
        return [.report(key, .started(job: key.job, attempt: key.attempt, node: node, at: at))]
    }

    /// The attempt's process ended (or could not start).
    public mutating func ended(_ key: Key, outcome: AttemptOutcome, results: [ResultFile] = [], resultsBundle: BlobRef? = nil,
                               logBytes: UInt64 = 0, at: Int64, refused: [String] = []) -> [Directive] {
        guard let phase = attempts[key], phase != .ended else { return [] }
        attempts[key] = .ended
        finished.insert(key)
        let report = ClusterState.Report(job: key.job, attempt: key.attempt, node: node, outcome: outcome, results: results,
                                         resultsBundle: resultsBundle, logBytes: logBytes, at: at, refused: refused)
        return [.report(key, .finished(report))]
    }
}
