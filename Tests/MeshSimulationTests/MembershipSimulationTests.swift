import MeshCore
import MeshSimulation
import Testing

/// Serialized: each test keeps a cooperative-pool thread busy for seconds, and running them side
/// by side would starve the other suites' async tests on a 2-core machine.
@Suite("Membership in simulation", .serialized)
struct MembershipSimulationTests {
    /// Join through one seed, converge, crash one node, and measure how long until every other
    /// node has it dead. Nobody else may be declared dead.
    func detection(nodes n: Int, start: MembershipSimulation.Start, seed: UInt64, bound: Duration) -> Duration? {
        let sim = MembershipSimulation(nodes: n, seed: seed, recordObservations: false, start: start)
        guard sim.run(until: { $0.isConverged }, limit: .seconds(60), every: .milliseconds(100)) != nil else {
            fail("\(n) nodes did not converge after joining", seed: seed)
            return nil
        }
        sim.recordObservations = true
        let victim = sim.id(1 + sim.random(n - 1))
        let t0 = sim.now
        sim.crash(victim)
        guard let at = sim.run(until: { $0.everyoneSees(victim, as: .dead) }, limit: bound, every: .milliseconds(50)) else {
            fail("\(sim.name(victim)) not dead everywhere within \(bound)", seed: seed)
            return nil
        }
        let wrong = sim.falseDeaths(since: t0, excluding: [victim])
        if !wrong.isEmpty { fail("live nodes declared dead: \(wrong.map { sim.name($0.subject) })", seed: seed) }
        return at - t0
    }

    @Test("10 nodes: join converges; a crashed node is dead everywhere within 10 s")
    func tenNodes() {
        var times: [Duration] = []
        for seed in seeds(20) {
            if let t = detection(nodes: 10, start: .join, seed: seed, bound: .seconds(10)) { times.append(t) }
        }
        print("membership N=10 detection (simulated):", summary(times))
    }

    @Test("100 nodes: join converges; a crashed node is dead everywhere within 15 s")
    func hundredNodes() {
        var times: [Duration] = []
        for seed in seeds(3) {
            if let t = detection(nodes: 100, start: .join, seed: seed, bound: .seconds(15)) { times.append(t) }
        }
        print("membership N=100 detection (simulated):", summary(times))
    }

    @Test("500 nodes: a crashed node is dead everywhere within 20 s")
    func fiveHundredNodes() {
        for seed in seeds(1) {
            if let t = detection(nodes: 500, start: .converged, seed: seed, bound: .seconds(20)) {
                print("membership N=500 detection (simulated): \(t)")
            }
        }
    }

    @Test("10% message loss for two minutes: suspicions come and go, but no live node is declared dead")
    func noFalseDeathsUnderLoss() {
        for seed in seeds(2) {
            let sim = MembershipSimulation(nodes: 50, seed: seed, faults: NetworkFaults(loss: 0.10), start: .converged)
            sim.run(for: .seconds(120))
            let deaths = sim.falseDeaths(since: .zero)
            if !deaths.isEmpty { fail("\(deaths.count) false deaths, e.g. \(sim.name(deaths[0].subject)) at \(deaths[0].at)", seed: seed) }
            let suspicions = sim.observations.filter { $0.state == .suspect }.count
            // A suspicion may be open at the moment the loss stops; it must clear soon after.
            sim.faults = .none
            if sim.run(until: { $0.isConverged }, limit: .seconds(10)) == nil { fail("not converged after the loss stopped", seed: seed) }
            print("membership N=50, 10% loss, 120 s: \(suspicions) suspicion observations, \(deaths.count) false deaths, \(sim.sent) messages")
        }
    }

    @Test("duplicated and reordered messages: still converges and detects")
    func duplicationAndReordering() {
        for seed in seeds(5) {
            let sim = MembershipSimulation(
                nodes: 20, seed: seed,
                faults: NetworkFaults(loss: 0.02, duplication: 0.2, minDelay: .milliseconds(1), maxDelay: .milliseconds(40)))
            guard sim.run(until: { $0.isConverged }, limit: .seconds(30)) != nil else {
                fail("did not converge", seed: seed)
                continue
            }
            let victim = sim.id(7)
            sim.crash(victim)
            if sim.run(until: { $0.everyoneSees(victim, as: .dead) }, limit: .seconds(15)) == nil {
                fail("crash not detected", seed: seed)
            }
        }
    }

    @Test("a partition: each side declares the other dead; healed, the mesh reconverges")
    func partitionHeals() {
        for seed in seeds(3) {
            let sim = MembershipSimulation(nodes: 20, seed: seed, start: .converged)
            sim.run(for: .seconds(2))
            let left = Array(sim.ids.prefix(10)), right = Array(sim.ids.suffix(10))
            sim.partition([left, right])
            let split = sim.run(until: { s in
                left.allSatisfy { l in right.allSatisfy { s.state(of: $0, seenBy: l) == .dead } }
                    && right.allSatisfy { r in left.allSatisfy { s.state(of: $0, seenBy: r) == .dead } }
            }, limit: .seconds(60))
            if split == nil { fail("the two sides did not declare each other dead", seed: seed) }
            sim.heal()
            let t0 = sim.now
            guard let healed = sim.run(until: { $0.isConverged }, limit: .seconds(90)) else {
                fail("did not reconverge after the partition healed", seed: seed)
                continue
            }
            print("membership N=20 partition healed, reconverged in \(healed - t0)")
        }
    }

    @Test("one node that can send but not receive is declared dead, and comes back when healed")
    func oneWayPartition() {
        for seed in seeds(3) {
            let sim = MembershipSimulation(nodes: 10, seed: seed, start: .converged)
            let deaf = sim.id(3)
            for other in sim.ids where other != deaf { sim.block(from: other, to: deaf) }
            if sim.run(until: { $0.everyoneSees(deaf, as: .dead) }, limit: .seconds(30)) == nil {
                fail("a node that cannot receive was not declared dead", seed: seed)
            }
            let others = Set(sim.ids).subtracting([deaf])
            let wrong = sim.falseDeaths(since: .zero, excluding: [deaf]).filter { others.contains($0.subject) && $0.observer != deaf }
            if !wrong.isEmpty { fail("healthy nodes declared dead: \(wrong.map { sim.name($0.subject) })", seed: seed) }
            sim.heal()
            if sim.run(until: { $0.isConverged }, limit: .seconds(60)) == nil { fail("did not reconverge", seed: seed) }
        }
    }

    @Test("a crashed node that restarts rejoins with a higher incarnation")
    func restart() {
        for seed in seeds(5) {
            let sim = MembershipSimulation(nodes: 10, seed: seed, start: .converged)
            let node = sim.id(4)
            let before = sim.instance(node)!.incarnation
            sim.crash(node)
            guard sim.run(until: { $0.everyoneSees(node, as: .dead) }, limit: .seconds(15)) != nil else {
                fail("crash not detected", seed: seed)
                continue
            }
            sim.restart(node)
            guard sim.run(until: { $0.isConverged }, limit: .seconds(15)) != nil else {
                fail("restarted node not alive everywhere", seed: seed)
                continue
            }
            let seen = sim.upNodes.compactMap { sim.instance($0)?.member(node)?.incarnation }
            if !seen.allSatisfy({ $0 > before }) { fail("incarnations \(seen) not above \(before)", seed: seed) }
        }
    }

    @Test("a paused node (SIGSTOP) is declared dead, then refutes and is alive again when resumed")
    func pause() {
        for seed in seeds(3) {
            let sim = MembershipSimulation(nodes: 10, seed: seed, start: .converged)
            let node = sim.id(2)
            let before = sim.instance(node)!.incarnation
            sim.pause(node, for: .seconds(20))
            if sim.run(until: { $0.everyoneSees(node, as: .dead) }, limit: .seconds(19)) == nil {
                fail("paused node not declared dead", seed: seed)
            }
            guard sim.run(until: { $0.isConverged }, limit: .seconds(40)) != nil else {
                fail("resumed node not alive again", seed: seed)
                continue
            }
            if sim.instance(node)!.incarnation <= before { fail("no refutation with a higher incarnation", seed: seed) }
        }
    }

    @Test("a graceful leave shows as 'left' everywhere, quickly, and is never mistaken for a death")
    func leave() {
        for seed in seeds(5) {
            let sim = MembershipSimulation(nodes: 10, seed: seed, start: .converged)
            let node = sim.id(5)
            sim.leave(node)
            guard let at = sim.run(until: { $0.everyoneSees(node, as: .left) }, limit: .seconds(5)) else {
                fail("leave not seen everywhere", seed: seed)
                continue
            }
            sim.crash(node)
            sim.run(for: .seconds(20))
            if !sim.everyoneSees(node, as: .left) { fail("left member changed state", seed: seed) }
            _ = at
        }
    }

    @Test("the same seed replays the same run, event for event")
    func deterministic() {
        func trace(_ seed: UInt64) -> ([MembershipSimulation.Observation], Int, Int) {
            let sim = MembershipSimulation(nodes: 15, seed: seed, faults: NetworkFaults(loss: 0.05, duplication: 0.05))
            sim.run(for: .seconds(5))
            sim.crash(sim.id(3))
            sim.run(for: .seconds(10))
            return (sim.observations, sim.sent, sim.delivered)
        }
        let a = trace(99), b = trace(99), c = trace(100)
        #expect(a.0 == b.0 && a.1 == b.1 && a.2 == b.2)
        #expect(a.0 != c.0 || a.1 != c.1)
    }
}
