/// The coordinator's matching of waiting jobs to nodes (DESIGN.md §6): first in, first out (by
/// priority, then submission), with backfill only for jobs that do not compete for what an
/// earlier waiting job waits for.
public enum Scheduler {
    /// A node as the scheduler sees it: its registered capacity and whether it takes jobs now.
    public struct Node: Sendable, Equatable {
        public var id: NodeID
        public var capacity: ClusterState.Capacity
        /// Alive in gossip, not cordoned, not draining.
        public var accepting: Bool

        public init(id: NodeID, capacity: ClusterState.Capacity, accepting: Bool) {
            self.id = id
            self.capacity = capacity
            self.accepting = accepting
        }
    }

    /// Assignments for as many pending jobs as fit now, at most `limit`.
    ///
    /// A job that fits nowhere *reserves* every node it could use once room frees up; later jobs
    /// may only go to nodes no earlier waiting job reserved. So a big job is never starved by a
    /// stream of small ones, and a small job still runs at once on a machine the big job could
    /// never use.
    public static func plan(_ state: ClusterState, nodes: [Node], term: UInt64, at: Int64, limit: Int = 1000) -> [ClusterState.Assignment] {
        var used = state.usage()
        var reserved: Set<NodeID> = []
        var out: [ClusterState.Assignment] = []
        // Only registered, uncordoned nodes that the caller says take jobs now.
        let candidates = nodes.filter { n in n.accepting && state.nodes[n.id].map { !$0.cordoned } == true }
            .sorted { $0.id < $1.id }
        guard !candidates.isEmpty else { return [] }
        let queue = state.pendingJobs.sorted {
            $0.spec.priority != $1.spec.priority ? $0.spec.priority > $1.spec.priority : $0.id < $1.id
        }
        for job in queue {
            if out.count >= limit { break }
            let r = job.spec.resources
            var best: (node: Node, free: Int)?
            var eligible: [NodeID] = []
            for n in candidates where ClusterState.mismatch(job.spec, n.capacity) == nil {
                eligible.append(n.id)
                if reserved.contains(n.id) { continue }
                let u = used[n.id] ?? ClusterState.Usage()
                let freeSlots = n.capacity.slots - u.slots
                guard freeSlots >= r.slots, n.capacity.gpus - u.gpus.count >= r.gpus else { continue }
                if r.cpus > 0 && n.capacity.cpus - u.cpus < r.cpus { continue }
                if r.memoryMB > 0 && n.capacity.memoryMB > 0 && n.capacity.memoryMB - u.memoryMB < r.memoryMB { continue }
                // Spread: the node with the most free slots (ties: lowest id).
                if best == nil || freeSlots > best!.free { best = (n, freeSlots) }
            }
            guard let chosen = best?.node else {
                reserved.formUnion(eligible)
                continue
            }
            var u = used[chosen.id] ?? ClusterState.Usage()
            let gpus = (0..<chosen.capacity.gpus).filter { !u.gpus.contains($0) }.prefix(r.gpus)
            u.slots += r.slots
            u.cpus += r.cpus
            u.memoryMB += r.memoryMB
            u.gpus.formUnion(gpus)
            used[chosen.id] = u
            out.append(ClusterState.Assignment(job: job.id, attempt: job.attempts.count + 1, node: chosen.id, gpus: Array(gpus), term: term, at: at))
        }
        return out
    }
}

/// The coordinator's duties for jobs besides scheduling: noticing attempts whose node has been out
/// of touch longer than their lease plus a grace, which may then run elsewhere. The worker kills
/// such an attempt when its lease runs out (before the grace ends), so an attempt never runs twice
/// at the same time.
public enum JobControl {
    public struct Settings: Sendable {
        /// The lease of a job that does not set its own.
        public var defaultLease: Duration = .seconds(60)
        /// Added to the lease before an attempt is declared lost: covers the time a cut-off worker
        /// takes to notice (it kills when its lease runs out), clock rates and delays.
        public var grace: Duration = .seconds(15)
        /// SIGTERM → SIGKILL delay of the supervisors (mesh setting `kill_grace_seconds`). A job that
        /// ignores SIGTERM lives until lease + killGrace, so nothing is declared lost before
        /// lease + killGrace + 1 s, whatever `grace` says (found by the chaos harness's review).
        public var killGrace: Duration = .seconds(10)

        /// What is added to the lease before an attempt is declared lost.
        public var effectiveGrace: Duration { killGrace > .zero ? Swift.max(grace, killGrace + .seconds(1)) : grace }

        public init() {}
    }

    /// Lost attempts: on a node the coordinator has not heard from for longer than lease + grace.
    /// `lastContact` is when each node last answered this coordinator; `leaderSince` is when it
    /// became coordinator (after a failover every node gets a fresh lease + grace from then).
    public static func lost(
        _ state: ClusterState, lastContact: [NodeID: Instant], leaderSince: Instant, self me: NodeID,
        now: Instant, settings: Settings, at: Int64
    ) -> [ClusterState.Command] {
        var out: [ClusterState.Command] = []
        for job in state.activeJobs {
            guard let a = job.current, a.node != me else { continue }
            let heard = Swift.max(lastContact[a.node] ?? leaderSince, leaderSince)
            let lease = job.spec.leaseSeconds > 0 ? Duration.seconds(Int64(job.spec.leaseSeconds)) : settings.defaultLease
            let silent = now - heard
            if silent > lease + settings.effectiveGrace {
                let name = state.nodes[a.node]?.name ?? "\(a.node)"
                out.append(.lost(job: job.id, attempt: a.number, reason: "\(name) out of touch for \(Int(silent.seconds)) s (lease \(Int(lease.seconds)) s)", at: at))
            }
        }
        return out
    }

    /// May `node` be given new work? Only if the coordinator has heard from it within the lease
    /// (gossip alone is not enough: a paused or cut-off node stays "alive" in gossip for seconds,
    /// and an attempt given to it would at once be declared lost again, over and over, until the
    /// job is given up).
    public static func inTouch(
        _ node: NodeID, lastContact: [NodeID: Instant], leaderSince: Instant, self me: NodeID, now: Instant, settings: Settings
    ) -> Bool {
        node == me || now - Swift.max(lastContact[node] ?? leaderSince, leaderSince) < settings.defaultLease
    }

    /// The lease a worker holds an attempt under.
    public static func lease(_ job: Job, settings: Settings) -> Duration {
        job.spec.leaseSeconds > 0 ? .seconds(Int64(job.spec.leaseSeconds)) : settings.defaultLease
    }
}
