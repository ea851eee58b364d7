import MeshCore
import Testing

/// The scheduler's flat, grouped inner loop (made for 10,000 jobs × 1,000 nodes) against the plain
/// version it replaced, kept here as the reference: same assignments, in the same order, on
/// random meshes and queues.
@Suite("Scheduler against its reference")
struct SchedulerEquivalenceTests {
    /// The scheduler as first written: every job against every node through `mismatch`.
    static func referencePlan(_ state: ClusterState, nodes: [Scheduler.Node], term: UInt64, at: Int64, limit: Int) -> [ClusterState.Assignment] {
        var used = state.usage()
        var reserved: Set<NodeID> = []
        var out: [ClusterState.Assignment] = []
        let candidates = nodes.filter { n in n.accepting && state.nodes[n.id].map { !$0.cordoned } == true }.sorted { $0.id < $1.id }
        guard !candidates.isEmpty else { return [] }
        let queue = state.pendingJobs.sorted { $0.spec.priority != $1.spec.priority ? $0.spec.priority > $1.spec.priority : $0.id < $1.id }
        for job in queue {
            if out.count >= limit { break }
            let r = job.spec.resources
            var best: (node: Scheduler.Node, free: Int)?
            var eligible: [NodeID] = []
            for n in candidates where ClusterState.mismatch(job.spec, n.capacity) == nil {
                eligible.append(n.id)
                if reserved.contains(n.id) { continue }
                let u = used[n.id] ?? ClusterState.Usage()
                let freeSlots = n.capacity.slots - u.slots
                guard freeSlots >= r.slots, n.capacity.gpus - u.gpus.count >= r.gpus else { continue }
                if r.cpus > 0 && n.capacity.cpus - u.cpus < r.cpus { continue }
                if r.memoryMB > 0 && n.capacity.memoryMB > 0 && n.capacity.memoryMB - u.memoryMB < r.memoryMB { continue }
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

    static func capacity(_ rng: inout SeededRandom) -> ClusterState.Capacity {
        var c = ClusterState.Capacity(slots: 1 + Int(rng.next() % 4), cpus: Int(rng.next() % 9), memoryMB: Int(rng.next() % 3) * 1000,
                                      gpus: Int(rng.next() % 3))
        c.nodeClass = ["", "cpu", "gpu"][Int(rng.next() % 3)]
        if rng.chance(0.5) { c.labels["zone"] = ["a", "b"][Int(rng.next() % 2)] }
        if rng.chance(0.3) { c.labels["ssd"] = "true" }
        return c
    }

    static func spec(_ rng: inout SeededRandom) -> JobSpec {
        var s = JobSpec(command: ["x"], resources: .init(slots: 1 + Int(rng.next() % 3), cpus: Int(rng.next() % 5), memoryMB: Int(rng.next() % 3) * 700,
                                                         gpus: Int(rng.next() % 2)),
                        priority: Int(rng.next() % 3))
        if rng.chance(0.3) { s.nodeClass = ["cpu", "gpu"][Int(rng.next() % 2)] }
        if rng.chance(0.3) { s.labels["zone"] = ["a", "b"][Int(rng.next() % 2)] }
        if rng.chance(0.1) { s.labels["ssd"] = "true" }
        return s
    }

    @Test("fits is mismatch == nil")
    func fits() {
        var rng = SeededRandom(seed: 11)
        for _ in 0..<5000 {
            let s = Self.spec(&rng), c = Self.capacity(&rng)
            #expect(ClusterState.fits(s, c) == (ClusterState.mismatch(s, c) == nil))
        }
    }

    @Test("same plans as the reference, round after round, on 60 random meshes", arguments: 1...60)
    func samePlans(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        let count = 1 + Int(rng.next() % 12)
        var s = JobStory(nodes: (0..<count).map { ("n\($0)", Self.capacity(&rng)) })
        for round in 0..<8 {
            for _ in 0..<Int(rng.next() % 15) { _ = s.submit(Self.spec(&rng)) }
            if rng.chance(0.2), let n = s.state.nodes.values.randomElement(using: &rng) { s.apply(.cordon(name: n.name, reason: "test")) }
            if rng.chance(0.2), let n = s.state.nodes.values.filter(\.cordoned).randomElement(using: &rng) { s.apply(.uncordon(name: n.name)) }
            let nodes = s.state.nodes.values.map { Scheduler.Node(id: $0.id, capacity: $0.capacity, accepting: !rng.chance(0.15)) }
            let limit = rng.chance(0.3) ? 1 + Int(rng.next() % 4) : 1000
            let plan = Scheduler.plan(s.state, nodes: nodes.shuffled(using: &rng), term: 1, at: Int64(round), limit: limit)
            let reference = Self.referencePlan(s.state, nodes: nodes, term: 1, at: Int64(round), limit: limit)
            #expect(plan == reference, "seed \(seed) round \(round)")
            // Applied together with a stale copy of itself (a second plan in flight, other jobs):
            // no node ends up over its slots or with a GPU twice.
            var stale = plan
            let pending = s.state.pendingJobs.map(\.id).filter { id in !plan.contains { $0.job == id } }
            for k in stale.indices { if k < pending.count { stale[k].job = pending[k]; stale[k].attempt = 1 } }
            s.apply(.assign(plan + stale))
            for (node, u) in s.state.usage() {
                let cap = s.state.nodes[node]!.capacity
                #expect(u.slots <= cap.slots, "seed \(seed): \(node) over its slots")
                let gpus = u.jobs.flatMap { s.job($0).current!.gpus }
                #expect(gpus.count == Set(gpus).count && gpus.allSatisfy { $0 < cap.gpus }, "seed \(seed): GPUs given twice")
            }
            // Some end.
            for j in s.state.activeJobs where rng.chance(0.4) { _ = s.finish(j.id, .exited(0)) }
        }
    }
}
