import Foundation
import MeshAgent
import MeshCore
import MeshTestSupport
import MeshWire
import Testing

/// The coordinator (Raft) between real `mesh` processes on loopback.
@Suite("mesh coordinator, real processes")
struct CoordinatorProcessTests {
    /// Starts `count` agents (the first founds the mesh) and waits until they have `voters` voters.
    func mesh(_ s: Scratch, count: Int, voters: Int, extra: (Int) -> [String] = { _ in [] }) throws -> [AgentProcess] {
        let agents = try s.startMesh(count, extra: extra)
        let ready = s.waitFor(.seconds(30)) {
            agents.allSatisfy { a in
                guard let c = s.status(a.dataDir)?.coordinator else { return false }
                return c.leader != 0 && c.voters.count == voters
            }
        }
        guard ready != nil else { throw Failure("no coordinator with \(voters) voters: \(agents.map { s.status($0.dataDir)?.coordinator.voters.count ?? -1 })") }
        return agents
    }

    func leaderIndex(_ s: Scratch, _ agents: [AgentProcess]) -> Int? {
        agents.firstIndex { a in
            guard let st = s.status(a.dataDir) else { return false }
            return st.coordinator.leader == st.nodeID && st.coordinator.leader != 0
        }
    }

    @Test("3 and 5 agents: kill -9 the coordinator; another is elected and a cordon sent through a follower succeeds, seen everywhere", arguments: [3, 5])
    func killCoordinator(count: Int) async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let agents = try mesh(s, count: count, voters: count)
            let l = try #require(leaderIndex(s, agents))
            let oldLeader = try #require(s.status(agents[l].dataDir)).nodeID
            let started = ContinuousClock.now
            agents[l].process.signal(SIGKILL)
            _ = agents[l].process.wait(timeout: .seconds(5))
            let follower = agents[(l + 1) % count]
            let victim = "n\((l + 2) % count)"
            let cordon = try s.mesh(["cordon", victim, "--reason", "test", "--data-dir", follower.dataDir])
            let acknowledged = ContinuousClock.now - started
            #expect(cordon.exitCode == 0, "\(cordon)")
            print("coordinator, \(count) real agents: kill -9 → cordon acknowledged through a follower in \(acknowledged)")
            let survivors = agents.indices.filter { $0 != l }
            let seen = s.waitFor(.seconds(20)) {
                survivors.allSatisfy { i in
                    guard let st = s.status(agents[i].dataDir) else { return false }
                    return st.coordinator.leader != 0 && st.coordinator.leader != oldLeader
                        && st.nodes.first { $0.name == victim }?.cordoned == true
                }
            }
            #expect(seen != nil, "\(survivors.map { i in s.status(agents[i].dataDir).map { st in "n\(i): leader \(st.coordinator.leader) (old \(oldLeader)) term \(st.coordinator.term) commit \(st.coordinator.commitIndex) applied \(st.coordinator.appliedIndex) cordoned \(st.nodes.first { $0.name == victim }?.cordoned == true)" } ?? "n\(i): no answer" })")
            // The dead coordinator keeps its vote during the grace period: a reboot must not
            // cost the mesh its fault tolerance.
            usleep(1_500_000)
            #expect(s.status(follower.dataDir)?.coordinator.voters.count == count)
        }
    }

    @Test("stop every agent and start them again (no --join): the state is intact and a coordinator is elected")
    func restartAll() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            var agents = try mesh(s, count: 3, voters: 3)
            #expect(try s.mesh(["cordon", "n1", "--reason", "kept", "--data-dir", agents[2].dataDir]).exitCode == 0)
            #expect(try s.mesh(["set", "voter_grace_seconds", "42", "--data-dir", agents[0].dataDir]).exitCode == 0)
            for a in agents { a.process.signal(SIGTERM) }
            for a in agents { #expect(a.process.wait(timeout: .seconds(10)) == .exited(0)) }
            // Same addresses as before, as on real hosts with a fixed port.
            agents = try agents.enumerated().map { i, a in try s.startAgent(a.dataDir, name: "n\(i)", extra: ["--listen", a.address]) }
            let back = s.waitFor(.seconds(30)) {
                agents.allSatisfy { a in
                    guard let st = s.status(a.dataDir), st.coordinator.leader != 0 else { return false }
                    return st.nodes.first { $0.name == "n1" }?.cordoned == true && st.coordinator.voters.count == 3
                }
            }
            #expect(back != nil, "\(agents.map { s.status($0.dataDir)?.coordinator ?? .init() })")
            let json = try s.mesh(["status", "--data-dir", agents[1].dataDir, "--json"])
            #expect(json.stdout.contains("\"leader\""))
            let reason = try s.mesh(["status", "--data-dir", agents[0].dataDir])
            #expect(reason.stdout.contains("n1 cordoned: kept"), "\(reason)")
        }
    }

    @Test("mesh leave on the coordinator hands over coordination; the others carry on")
    func leaveAsCoordinator() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let agents = try mesh(s, count: 3, voters: 3)
            let l = try #require(leaderIndex(s, agents))
            let leaverID = try #require(s.status(agents[l].dataDir)).nodeID
            let leave = try s.mesh(["leave", "--data-dir", agents[l].dataDir])
            #expect(leave.exitCode == 0, "\(leave)")
            #expect(agents[l].process.wait(timeout: .seconds(10)) == .exited(0))
            let rest = agents.indices.filter { $0 != l }
            #expect(s.waitFor(.seconds(10)) {
                rest.allSatisfy { i in
                    guard let st = s.status(agents[i].dataDir) else { return false }
                    return st.coordinator.leader != 0 && st.state(of: "n\(l)") == "left" && !st.coordinator.voters.contains(leaverID)
                }
            } != nil)
            let write = try s.mesh(["cordon", "n\(rest[0])", "--data-dir", agents[rest[1]].dataDir])
            #expect(write.exitCode == 0, "\(write)")
        }
    }

    @Test("writes sent to the coordinator while it hands over and leaves are all answered, and it exits cleanly")
    func writesDuringLeave() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let agents = try mesh(s, count: 3, voters: 3)
            let l = try #require(leaderIndex(s, agents))
            let address = DataDirectory(path: agents[l].dataDir).localAddress
            let secret = try s.secret(of: agents[l].dataDir)
            // Writers keep the coordinator busy with writes through the whole leave, so that some
            // arrive while it cannot propose (handing over): such a write once recursed without end
            // (forwarded to itself) until the agent died of a stack overflow.
            let record = WriteRecord(writers: 4)
            let writers = (0..<4).map { t in
                let thread = Thread {
                    defer { record.finished() }
                    guard let c = try? MeshClient(address: address, secret: secret) else { return record.failed("writer \(t): no client") }
                    defer { c.close() }
                    var i = 0
                    while !record.stopping {
                        i += 1
                        do throws(ClientError) {
                            _ = try c.write(.setSetting(key: "probe.\(t)", value: "\(i)"), timeout: .seconds(10))
                            record.answered()
                        } catch {
                            // Once the agent has gone, nothing answers: that is the end, not a failure.
                            if record.leaveEnded { return }
                            if case .remote(_, .retryLater, _) = error { return record.answered() }
                            return record.failed("writer \(t), write \(i), before the leave ended: \(error)")
                        }
                    }
                }
                thread.start()
                return thread
            }
            _ = s.waitFor(.seconds(10)) { record.count >= 20 }
            let leave = try s.mesh(["leave", "--data-dir", agents[l].dataDir])
            record.endLeave()
            #expect(leave.exitCode == 0, "\(leave)")
            #expect(agents[l].process.wait(timeout: .seconds(10)) == .exited(0))
            record.stop()
            #expect(s.waitFor(.seconds(30)) { record.running == 0 } != nil, "writers still waiting for answers")
            #expect(record.failures.isEmpty, "\(record.failures)")
            #expect(record.count >= 20, "only \(record.count) writes answered (\(writers.count) writers)")
            let rest = agents.indices.filter { $0 != l }
            let write = try s.mesh(["cordon", "n\(rest[0])", "--data-dir", agents[rest[1]].dataDir])
            #expect(write.exitCode == 0, "\(write)")
        }
    }

    @Test("a voter dead longer than the grace is replaced by a healthy member")
    func replaceDeadVoter() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let agents = try mesh(s, count: 4, voters: 3)
            #expect(try s.mesh(["set", "voter_grace_seconds", "2", "--data-dir", agents[0].dataDir]).exitCode == 0)
            guard let st = s.status(agents[0].dataDir), let l = leaderIndex(s, agents) else { throw Failure("no coordinator") }
            // A voter that is not the coordinator dies.
            let voterIDs = Set(st.coordinator.voters)
            let victim = try #require(agents.indices.first { i in
                i != l && voterIDs.contains(s.status(agents[i].dataDir)?.nodeID ?? 0)
            })
            let victimID = s.status(agents[victim].dataDir)!.nodeID
            agents[victim].process.signal(SIGKILL)
            let replaced = s.waitFor(.seconds(30)) {
                guard let c = s.status(agents[l].dataDir)?.coordinator else { return false }
                return c.voters.count == 3 && !c.voters.contains(victimID)
            }
            #expect(replaced != nil, "\(s.status(agents[l].dataDir)?.coordinator ?? .init())")
        }
    }
}

/// What the writers of `writesDuringLeave` saw, shared between their threads.
final class WriteRecord: @unchecked Sendable {
    private let lock = NSLock()
    private var answers = 0, live: Int, stopFlag = false, leaveDone = false, problems: [String] = []

    init(writers: Int) { live = writers }
    var count: Int { lock.withLock { answers } }
    var running: Int { lock.withLock { live } }
    var stopping: Bool { lock.withLock { stopFlag } }
    var leaveEnded: Bool { lock.withLock { leaveDone } }
    var failures: [String] { lock.withLock { problems } }
    func answered() { lock.withLock { answers += 1 } }
    func failed(_ why: String) { lock.withLock { problems.append(why) } }
    func finished() { lock.withLock { live -= 1 } }
    func stop() { lock.withLock { stopFlag = true } }
    func endLeave() { lock.withLock { leaveDone = true } }
}
