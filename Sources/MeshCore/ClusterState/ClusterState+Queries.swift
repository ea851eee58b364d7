/// Reads that clients make of the state (`mesh jobs`, `mesh status`): bounded in the jobs they
/// return and in the work they do, however long the mesh's history.
extension ClusterState {
    /// A page of `mesh jobs`: newest first, filtered.
    public struct JobQuery: Sendable, Equatable {
        /// At most this many jobs (0: `defaultLimit`).
        public var limit: Int = 0
        /// Only ids below this (0: from the newest); a page's `nextBefore` continues it.
        public var before: JobID = 0
        public var states: Set<JobState> = []
        /// The job's name contains this (empty: any).
        public var name: String = ""
        /// Its latest attempt is on this node.
        public var node: NodeID?
        /// Submitted at or after this (Unix milliseconds; 0: any).
        public var sinceMillis: Int64 = 0

        /// Ids a page looks at before it answers (with `more`), so that one read of a long
        /// history with a filter that rarely matches cannot hold the I/O thread for long.
        public var scanBudget = Self.defaultScanBudget

        public static let defaultLimit = 1000
        public static let defaultScanBudget = 250_000

        public init(limit: Int = 0, before: JobID = 0, states: Set<JobState> = [], name: String = "", node: NodeID? = nil, sinceMillis: Int64 = 0) {
            self.limit = limit
            self.before = before
            self.states = states
            self.name = name
            self.node = node
            self.sinceMillis = sinceMillis
        }

        public func matches(_ j: Job) -> Bool {
            (states.isEmpty || states.contains(j.state)) && (name.isEmpty || j.displayName.contains(name))
                && (node == nil || j.current?.node == node) && (sinceMillis == 0 || j.submittedAt >= sinceMillis)
        }
    }

    /// The jobs of one page, newest first; `more` if older ones may match (ask again with
    /// `before: nextBefore`).
    public func page(_ q: JobQuery) -> (jobs: [Job], more: Bool, nextBefore: JobID) {
        let limit = q.limit > 0 ? Swift.min(q.limit, JobQuery.defaultLimit) : JobQuery.defaultLimit
        var id = q.before == 0 ? nextJobID : Swift.min(q.before, nextJobID)
        var out: [Job] = []
        var scanned = 0
        while id > 1, out.count < limit, scanned < q.scanBudget {
            id -= 1
            scanned += 1
            guard let j = jobs[id] else { continue }
            // Submitted before `since`: every older job was too (ids grow with time, as far as
            // the submitters' clocks agree), so the page ends here.
            if q.sinceMillis > 0, j.submittedAt < q.sinceMillis, q.states.isEmpty, q.name.isEmpty, q.node == nil {
                return (out, false, id)
            }
            if q.matches(j) { out.append(j) }
        }
        return (out, id > 1, id)
    }

    /// What `mesh status` shows of the jobs: those on nodes, and the first `queued` waiting for
    /// one (pending, then waiting for dependencies), by id. Counts are in `stateCounts`.
    public func summaryJobs(queued: Int = 5) -> [Job] {
        let waiting = pendingIDs.sorted().prefix(queued) + waitingIDs.sorted().prefix(queued)
        return activeJobs + waiting.prefix(queued).compactMap { jobs[$0] }
    }
}
