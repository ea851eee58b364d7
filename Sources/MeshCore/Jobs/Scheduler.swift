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
        // Only registered, uncordoned nodes that the caller says take jobs now, in id order (a
        // node's position is its rank: ties go to the lowest id).
        // (A quarantined node is a candidate for its canaries only.)
        let candidates = nodes.filter { n in n.accepting && state.nodes[n.id].map { !$0.cordoned || $0.quarantined } == true }
            .sorted { $0.id < $1.id }
        guard !candidates.isEmpty, limit > 0 else { return [] }
        let canaryOnly = candidates.map { state.nodes[$0.id]!.quarantined }
        var room = Room(candidates, used: state.usage())
        // Nodes of the same class and labels form a group: a job's class and labels are compared
        // once per group, not once per node.
        var groups: [(capacity: ClusterState.Capacity, members: [Int])] = []
        var groupOf: [Signature: Int] = [:]
        for (i, n) in candidates.enumerated() {
            let key = Signature(nodeClass: n.capacity.nodeClass, labels: n.capacity.labels)
            if let g = groupOf[key] { groups[g].members.append(i) } else {
                groupOf[key] = groups.count
                groups.append((n.capacity, [i]))
            }
        }
        // The queue: by priority, then id, without copying whole jobs.
        let queue = state.pendingIDs.compactMap { id in state.jobs[id].map { (id: id, priority: $0.spec.priority) } }
            .sorted { $0.priority != $1.priority ? $0.priority > $1.priority : $0.id < $1.id }
        var reserved = [Bool](repeating: false, count: candidates.count)
        var eligible: [Int] = []
        var out: [ClusterState.Assignment] = []
        for entry in queue {
            if out.count >= limit { break }
            guard let job = state.jobs[entry.id] else { continue }
            let spec = job.spec, r = spec.resources
            var best = -1, bestFree = 0
            eligible.removeAll(keepingCapacity: true)
            for g in groups where ClusterState.matchesClassAndLabels(spec, g.capacity) {
                for i in g.members where room.couldEverRun(r, i) {
                    if let pinned = spec.node, candidates[i].id != pinned { continue }
                    if canaryOnly[i] && !spec.canary { continue }
                    eligible.append(i)
                    if reserved[i] { continue }
                    guard let free = room.freeSlots(for: r, i) else { continue }
                    // Spread: the node with the most free slots (ties: lowest id).
                    if best < 0 || free > bestFree || (free == bestFree && i < best) { (best, bestFree) = (i, free) }
                }
            }
            guard best >= 0 else {
                for i in eligible { reserved[i] = true }
                continue
            }
            let gpus = room.take(r, best)
            out.append(ClusterState.Assignment(job: job.id, attempt: job.attempts.count + 1, node: candidates[best].id, gpus: gpus, term: term, at: at))
        }
        return out
    }

    /// A node's class and labels: what groups nodes that the same jobs can use.
    private struct Signature: Hashable {
        var nodeClass: String
        var labels: [String: String]
    }

    /// Capacity and use of the candidates, by position, in flat arrays (the inner loop of `plan`
    /// runs jobs × nodes times).
    private struct Room {
        var slots: [Int], cpus: [Int], memoryMB: [Int], gpus: [Int]
        var usedSlots: [Int], usedCPUs: [Int], usedMemoryMB: [Int], usedGPUs: [Set<Int>]

        init(_ candidates: [Node], used: [NodeID: ClusterState.Usage]) {
            slots = candidates.map(\.capacity.slots)
            cpus = candidates.map(\.capacity.cpus)
            memoryMB = candidates.map(\.capacity.memoryMB)
            gpus = candidates.map(\.capacity.gpus)
            let u = candidates.map { used[$0.id] ?? ClusterState.Usage() }
            usedSlots = u.map(\.slots)
            usedCPUs = u.map(\.cpus)
            usedMemoryMB = u.map(\.memoryMB)
            usedGPUs = u.map(\.gpus)
        }

        /// The size part of `ClusterState.mismatch`: could node `i` ever run a job of this size?
        func couldEverRun(_ r: Resources, _ i: Int) -> Bool {
            r.slots <= slots[i] && r.gpus <= gpus[i] && r.cpus <= cpus[i] && !(r.memoryMB > 0 && memoryMB[i] > 0 && r.memoryMB > memoryMB[i])
        }

        /// The node's free slots if the job fits in what is free now, else nil.
        func freeSlots(for r: Resources, _ i: Int) -> Int? {
            let free = slots[i] - usedSlots[i]
            guard free >= r.slots, gpus[i] - usedGPUs[i].count >= r.gpus else { return nil }
            if r.cpus > 0 && cpus[i] - usedCPUs[i] < r.cpus { return nil }
            if r.memoryMB > 0 && memoryMB[i] > 0 && memoryMB[i] - usedMemoryMB[i] < r.memoryMB { return nil }
            return free
        }

        /// Books the job on node `i`; the GPUs it gets (the lowest free ones).
        mutating func take(_ r: Resources, _ i: Int) -> [Int] {
            let chosen = Array((0..<gpus[i]).filter { !usedGPUs[i].contains($0) }.prefix(r.gpus))
            usedSlots[i] += r.slots
            usedCPUs[i] += r.cpus
            usedMemoryMB[i] += r.memoryMB
            usedGPUs[i].formUnion(chosen)
            return chosen
        }
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
            let lease = Self.lease(job, settings: settings)
            let silent = now - heard
            if silent > lease + settings.effectiveGrace {
                let name = state.nodes[a.node]?.name ?? "\(a.node)"
                out.append(.lost(job: job.id, attempt: a.number, reason: "\(name) out of touch for \(silent.wholeSeconds) s (lease \(lease.wholeSeconds) s)", at: at))
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

    /// The lease a worker holds an attempt under (a job's own within `Limits.maxLeaseSeconds`,
    /// whatever an older release let into the state).
    public static func lease(_ job: Job, settings: Settings) -> Duration { lease(job.spec, settings: settings) }

    public static func lease(_ spec: JobSpec, settings: Settings) -> Duration {
        spec.leaseSeconds > 0 ? .seconds(spec.leaseSeconds, limit: Limits.maxLeaseSeconds) : settings.defaultLease
    }
}
