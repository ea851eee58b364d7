import Foundation
import MeshCore
import MeshFuzzing
import MeshWire
import Testing

/// No input can stop the mesh (DESIGN.md §5, totality): the state machine over random sequences
/// of requests with extreme values, the inputs that trapped 0.3, mutated messages, and the fuzz
/// corpus replayed. A trap fails the run by ending the test process.
@Suite("Totality: any entry, any message")
struct TotalityTests {
    static func bytes(seed: UInt64, count: Int) -> [UInt8] {
        var rng = SeededRandom(seed: seed)
        return (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    }

    @Test("apply over random request sequences with extreme values keeps every invariant", arguments: 0..<4)
    func randomSequences(shard: Int) {
        var entries = 0
        for seed in UInt64(shard * 150)..<UInt64(shard * 150 + 150) {
            let problems = FuzzTargets.apply(Self.bytes(seed: seed, count: 4096), steps: 96)
            #expect(problems.isEmpty, "seed \(seed): \(problems.prefix(3))")
            entries += 96
        }
        print("totality shard \(shard): 150 seeds, up to \(entries) entries")
    }

    @Test("the generator's requests reach past the checks: every kind of command is applied, not only refused")
    func generatorReachesDeep() {
        var outcomes: [String: (done: Int, refused: Int)] = [:]
        for seed in 0..<200 { _ = FuzzTargets.apply(Self.bytes(seed: UInt64(seed), count: 4096), steps: 96, outcomes: &outcomes) }
        print("apply outcomes by command: \(outcomes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.done)/\($0.value.done + $0.value.refused)" })")
        for kind in ["register", "cordon", "uncordon", "drain", "requeue", "setSetting", "submit", "assign", "started", "finished", "lost", "cancel", "retry", "hold", "release", "stored", "plan"] {
            let o = outcomes[kind] ?? (0, 0)
            #expect(o.done > 0, "no \(kind) was ever applied (\(o.refused) refused)")
            #expect(o.refused > 0, "no \(kind) was ever refused: the extremes do not reach it")
        }
    }

    @Test("the Raft, gossip and request paths take random and mutated envelopes", arguments: 0..<2)
    func mutatedEnvelopes(shard: Int) {
        var rng = SeededRandom(seed: 77 + UInt64(shard))
        let valid = FuzzTargets.seedEnvelopes()
        for i in 0..<3000 {
            var m = valid[i % valid.count]
            // Flip, insert and delete bytes, a few at a time.
            for _ in 0..<(1 + Int(rng.next() % 4)) where !m.isEmpty {
                let at = Int(rng.next() % UInt64(m.count))
                switch rng.next() % 3 {
                case 0: m[at] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
                case 1: m.insert(UInt8(truncatingIfNeeded: rng.next()), at: at)
                default: m.remove(at: at)
                }
            }
            #expect(FuzzTargets.wire(m).isEmpty)
        }
        for seed in 0..<500 { _ = FuzzTargets.wire(Self.bytes(seed: UInt64(seed), count: Int(seed % 200))) }
    }

    /// `MESH_WRITE_CORPUS=1 swift test --filter writeWireCorpus` writes the wire seeds into
    /// Fuzz/Corpus/wire (committed; the fuzzers start from them).
    @Test("the wire corpus's seeds", .enabled(if: ProcessInfo.processInfo.environment["MESH_WRITE_CORPUS"] == "1"))
    func writeWireCorpus() throws {
        for (i, e) in FuzzTargets.seedEnvelopes().enumerated() {
            try Data(e).write(to: Self.corpus.appendingPathComponent("wire/envelope-\(i < 10 ? "0" : "")\(i)"))
        }
    }

    // MARK: The inputs that stopped 0.3 (issue: "No input can stop the mesh")

    /// A mesh of one node with a job on it.
    static func mesh() -> ClusterState {
        var s = ClusterState()
        _ = s.apply(.init(client: .init(1), sequence: 1, command: .register(NodeID(1), name: "n1", address: "a", capacity: .init(slots: 2))), at: 1)
        return s
    }

    @Test("a lease or timeout past its bound is refused when applied, and changes nothing", arguments: [
        JobSpec(command: ["true"], leaseSeconds: UInt64.max), JobSpec(command: ["true"], leaseSeconds: 1 << 63),
        JobSpec(command: ["true"], timeoutSeconds: UInt64.max), JobSpec(command: ["true"], retries: Int.max),
        JobSpec(command: ["true"], resources: Resources(slots: Int.max)), JobSpec(command: ["true"], resources: Resources(gpus: Int.max)),
        JobSpec(command: ["true"], priority: Int.max),
    ])
    func poisonSubmit(spec: JobSpec) {
        var s = Self.mesh()
        let before = s
        let outcome = s.apply(.init(client: .init(2), sequence: 1, command: .submit(spec, Provenance(), at: 0, via: NodeID(1))), at: 2)
        guard case .rejected(let why) = outcome else { Issue.record("accepted: \(outcome)"); return }
        #expect(s.jobs.isEmpty && s.nodes == before.nodes, "\(why)")
    }

    @Test("a state that already holds a poison job (written by 0.3) is read without a trap")
    func poisonedStateFromAnOlderRelease() {
        var job = Job(id: 1, spec: JobSpec(command: ["true"], timeoutSeconds: .max, leaseSeconds: .max), provenance: Provenance(), submittedAt: 0,
                      submittedVia: NodeID(1), state: .assigned, reason: "", history: [.init(state: .assigned, reason: "", at: 0, index: 2)],
                      attempts: [Attempt(number: 1, node: NodeID(2), term: 1, gpus: [], assignedAt: 0)], results: [], resultsBundle: nil,
                      cancelRequested: false, lostAttempts: 0, failedAttempts: 0)
        job.requeueRequested = false
        let state = ClusterState(nodes: Self.mesh().nodes, sessions: [:], settings: ["lease_seconds": "1e300"], appliedIndex: 2,
                                 jobs: [1: job], nextJobID: .max)
        let far = Instant(nanoseconds: .max - 5)
        let lost = JobControl.lost(state, lastContact: [NodeID(2): Instant(nanoseconds: .min)], leaderSince: .zero, self: NodeID(1), now: far,
                                   settings: .init(), at: 0)
        #expect(lost.count == 1)
        #expect(JobControl.lease(job, settings: .init()) == .seconds(Int64(Limits.maxLeaseSeconds)))
        var s = state
        // No more job numbers: a submit is refused, not a trap on nextJobID + 1.
        let outcome = s.apply(.init(client: .init(3), sequence: 1, command: .submit(JobSpec(command: ["true"]), Provenance(), at: 0, via: NodeID(1))), at: 3)
        #expect(!outcome.isDone)
    }

    @Test("a drain deadline near Int64.max is refused (its message computed deadline + 999)")
    func poisonDrain() {
        var s = Self.mesh()
        for d in [Int64.max, Int64.max - 500, -1, Limits.maxDrainDeadlineMillis + 1] {
            let outcome = s.apply(.init(client: .init(2), sequence: UInt64(d & 0xffff) + 1, command: .drain(name: "n1", deadlineMillis: d, leaving: false)), at: 5)
            #expect(!outcome.isDone)
        }
        #expect(s.nodes[NodeID(1)]?.draining == false)
    }

    @Test("a Raft message with an impossible term is dropped: the leader keeps its term and can elect again")
    func impossibleTerm() {
        var leader = Consensus.Instance(id: NodeID(1), stored: .bootstrap(NodeID(1)), seed: 1, now: .zero)
        _ = leader.start(now: .zero)
        #expect(leader.role == .leader)
        let term = leader.term
        let poison = Consensus.Packet(from: NodeID(2), to: NodeID(1), term: .max, message: .appendResponse(.init(success: false, index: .max)))
        let out = leader.onPacket(poison, now: .zero + .milliseconds(10))
        #expect(out.contains { if case .dropped = $0 { true } else { false } })
        #expect(leader.term == term && leader.role == .leader)
        // A store that 0.3 poisoned: read at the bound, and elections still work.
        var stored = Consensus.Stored.bootstrap(NodeID(1))
        stored.hardState.term = .max
        var n = Consensus.Instance(id: NodeID(1), stored: stored, seed: 1, now: .zero)
        _ = n.start(now: .zero)
        #expect(n.role == .leader && n.term == Limits.maxTerm - Limits.maxTermStep + 1)
        // An echo from our own future neither confirms the leader nor anchors a lease.
        var f = Consensus.Instance(id: NodeID(2), stored: .init(hardState: .init(term: 1), entries: [
            .init(index: 1, term: 1, payload: .configuration(.init(voters: [NodeID(1), NodeID(2)])))]), seed: 1, now: .zero)
        _ = f.onPacket(.init(from: NodeID(1), to: NodeID(2), term: 1, message: .append(prevIndex: 1, prevTerm: 1, entries: [], commit: 1),
                             echo: Instant(nanoseconds: .max)), now: .zero + .seconds(1))
        #expect(f.leaseAnchor == nil)
    }

    @Test("an incarnation past its bound is malformed; saturating arithmetic where one passed")
    func incarnations() {
        var w = WireMemberUpdate()
        w.kind = .suspect
        w.node = 7
        w.from = 8
        w.incarnation = .max
        #expect(throws: WireError.self) { try Wire.update(w) }
    }

    @Test("Instant and Duration arithmetic saturates")
    func saturation() {
        #expect(Instant(nanoseconds: .max) + .seconds(5) == Instant(nanoseconds: .max))
        #expect(Instant(nanoseconds: .min) - .seconds(5) == Instant(nanoseconds: .min))
        #expect(Instant(nanoseconds: .max) - Instant(nanoseconds: .min) == .nanoseconds(Int64.max))
        #expect(Instant(nanoseconds: .min) - Instant(nanoseconds: .max) == .nanoseconds(Int64.min))
        #expect(Duration.seconds(UInt64.max, limit: 10) == .seconds(10))
        #expect(Instant.zero - Duration.nanoseconds(Int64.min) == Instant(nanoseconds: .max))
    }

    // MARK: The committed corpus

    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Fuzz/Corpus").standardized

    @Test("every input of the committed fuzz corpus passes its target", arguments: ["wire", "apply", "plan"])
    func corpus(target: String) throws {
        let dir = Self.corpus.appendingPathComponent(target)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        #expect(!files.isEmpty, "no corpus in \(dir.path)")
        for f in files {
            let data = [UInt8](try Data(contentsOf: dir.appendingPathComponent(f)))
            let problems = switch target {
            case "wire": FuzzTargets.wire(data)
            case "apply": FuzzTargets.apply(data)
            default: FuzzTargets.plan(data)
            }
            #expect(problems.isEmpty, "\(target)/\(f): \(problems.prefix(3))")
        }
    }
}
