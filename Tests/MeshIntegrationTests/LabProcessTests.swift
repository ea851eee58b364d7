import Foundation
import MeshAgent
import MeshCore
import MeshTestSupport
import MeshWire
import Testing

/// Running a lab with real `mesh` processes: drain and leave, quarantine, machine setup,
/// scale-up and idle shutdown, a rolling upgrade with jobs running.
@Suite("running a lab, real processes")
struct LabProcessTests {
    let coordinator = CoordinatorProcessTests()
    let jobs = JobProcessTests()

    func set(_ s: Scratch, _ dataDir: String, _ settings: [(String, String)]) throws {
        for (k, v) in settings {
            let r = try s.mesh(["set", k, v, "--data-dir", dataDir])
            guard r.exitCode == 0 else { throw Failure("mesh set \(k) \(v): \(r)") }
        }
    }

    func submit(_ s: Scratch, _ dataDir: String, _ args: [String]) throws -> JobID {
        let r = try s.mesh(["submit", "--no-code", "--data-dir", dataDir] + args)
        guard r.exitCode == 0, let word = r.stdout.split(separator: " ").dropFirst(2).first, let id = JobID(word) else {
            throw Failure("submit: \(r)")
        }
        return id
    }

    func job(_ s: Scratch, _ dataDir: String, _ id: JobID) -> Job? { jobs.jobs(s, dataDir, [id]).first }

    func record(_ s: Scratch, _ dataDir: String, _ name: String) -> WireNodeRecord? {
        s.status(dataDir)?.nodes.first { $0.name == name }
    }

    @Test("drain: the running job finishes, nothing new starts, status says draining then drained; a deadline requeues what still runs; leave drains first")
    func drainAndLeave() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let agents = try coordinator.mesh(s, count: 3, voters: 3) { $0 == 2 ? ["--label", "box=w", "--slots", "2"] : [] }
            let n0 = agents[0].dataDir
            // Bad input: a clear error, nothing changed.
            let unknown = try s.mesh(["drain", "nobody", "--data-dir", n0])
            #expect(unknown.exitCode == 1 && unknown.stderr.contains("no node named 'nobody'"), "\(unknown)")
            let badDeadline = try s.mesh(["drain", "n2", "--deadline", "soon", "--data-dir", n0])
            #expect(badDeadline.exitCode == 64, "\(badDeadline)")
            let badSetting = try s.mesh(["set", "quarantine_after", "many", "--data-dir", n0])
            #expect(badSetting.exitCode == 64 && badSetting.stderr.contains("quarantine_after"), "\(badSetting)")
            let infinite = try s.mesh(["set", "scale_up_pause_seconds", "inf", "--data-dir", n0])
            #expect(infinite.exitCode == 64 && infinite.stderr.contains("scale_up_pause_seconds is a number of seconds"), "\(infinite)")
            // Past the CLI (another client, an older one): the agent refuses it too, and runs on.
            let raw = try MeshClient(address: DataDirectory(path: n0).localAddress, secret: try s.secret(of: n0))
            for (k, v) in [("scale_up_pause_seconds", "inf"), ("lease_seconds", "nan"), ("max_voters", "2")] {
                #expect(throws: ClientError.self, "\(k)=\(v)") { _ = try raw.write(.setSetting(key: k, value: v)) }
            }
            raw.close()
            #expect(s.status(n0)?.settings["scale_up_pause_seconds"] == nil)
            let idleAlone = try s.mesh(["agent", "--data-dir", n0, "--idle-shutdown-cmd", "true"])
            #expect(idleAlone.exitCode == 64 && idleAlone.stderr.contains("--idle-shutdown-after"), "\(idleAlone)")
            let setupNobody = try s.mesh(["node", "setup", "nobody", "--data-dir", n0, "--", "true"])
            #expect(setupNobody.exitCode == 1 && setupNobody.stderr.contains("no member named 'nobody'"), "\(setupNobody)")
            let emptySetup = try s.mesh(["node", "setup", "n1", "--data-dir", n0, "--", ""])
            #expect(emptySetup.exitCode != 0 && emptySetup.stderr.contains("non-empty"), "\(emptySetup)")
            #expect(record(s, n0, "n2")?.draining == false)
            try set(s, n0, [("kill_grace_seconds", "1")])
            // Jobs that run until the test lets them end (a file appears): no timing assumptions.
            let gate = s.dir.sub("gate")
            let gated = "while [ ! -e \(gate) ]; do sleep 0.05; done; echo done"
            let first = try submit(s, n0, ["--label", "box=w", "--", "sh", "-c", gated])
            #expect(s.waitFor(.seconds(20)) { job(s, n0, first)?.state == .running } != nil)
            let drain = try s.mesh(["drain", "n2", "--data-dir", n0])
            #expect(drain.exitCode == 0 && drain.stdout.contains("n2 draining: 1 job running"), "\(drain)")
            let status = try s.mesh(["status", "--data-dir", n0])
            #expect(status.stdout.contains("draining (1 running)"), "\(status)")
            let second = try submit(s, n0, ["--label", "box=w", "--", "true"])
            Thread.sleep(forTimeInterval: 1)
            #expect(job(s, n0, second)?.state == .pending)
            _ = FileManager.default.createFile(atPath: gate, contents: nil)
            #expect(s.waitFor(.seconds(20)) { job(s, n0, first)?.state == .succeeded } != nil)
            #expect(job(s, n0, first)?.attempts.count == 1, "the running job finished where it was")
            #expect(job(s, n0, second)?.state == .pending, "nothing new starts on a draining node")
            let wait = try s.mesh(["drain", "n2", "--wait", "--data-dir", n0])
            #expect(wait.exitCode == 0 && wait.stdout.contains("n2 is drained"), "\(wait)")
            let json = try s.mesh(["status", "--json", "--data-dir", n0])
            #expect(json.stdout.contains("\"condition\" : \"drained\""), "\(json)")
            #expect(try s.mesh(["uncordon", "n2", "--data-dir", n0]).exitCode == 0)
            #expect(s.waitFor(.seconds(20)) { job(s, n0, second)?.state == .succeeded } != nil)

            // A deadline: what still runs then is stopped and put back in the queue, not failed.
            let long = try submit(s, n0, ["--label", "box=w", "--", "sleep", "60"])
            #expect(s.waitFor(.seconds(20)) { job(s, n0, long)?.state == .running } != nil)
            let deadline = try s.mesh(["drain", "n2", "--deadline", "1s", "--data-dir", n0])
            #expect(deadline.exitCode == 0, "\(deadline)")
            #expect(s.waitFor(.seconds(20)) { job(s, n0, long)?.state == .pending } != nil, "\(String(describing: job(s, n0, long)))")
            let requeued = try #require(job(s, n0, long))
            #expect(requeued.reason.contains("drain's deadline") && requeued.failedAttempts == 0, "\(requeued.reason)")
            #expect(requeued.attempts.first?.outcome == .cancelled)
            #expect(try s.mesh(["uncordon", "n2", "--data-dir", n0]).exitCode == 0)
            #expect(s.waitFor(.seconds(20)) { job(s, n0, long)?.state == .running && job(s, n0, long)?.attempts.count == 2 } != nil)
            #expect(try s.mesh(["cancel", "\(long)", "--data-dir", n0]).exitCode == 0)
            #expect(s.waitFor(.seconds(20)) { job(s, n0, long)?.state == .cancelled } != nil)

            // `mesh leave` on n2 drains first: its job finishes, then it leaves.
            try FileManager.default.removeItem(atPath: gate)
            let last = try submit(s, n0, ["--label", "box=w", "--", "sh", "-c", gated])
            #expect(s.waitFor(.seconds(20)) { job(s, n0, last)?.state == .running } != nil)
            // The job ends only once `mesh leave` has said that it waits for it.
            let leaveOut = s.dir.sub("leave.out")
            let leaving = try ChildProcess.spawn(MeshBinary.path, ["leave", "--data-dir", agents[2].dataDir], stdout: leaveOut, stderr: leaveOut)
            let said = s.waitFor(.seconds(60)) { ((try? String(contentsOfFile: leaveOut, encoding: .utf8)) ?? "").contains("waiting for 1 job on n2") }
            _ = FileManager.default.createFile(atPath: gate, contents: nil)
            let leaveEnd = leaving.wait(timeout: .seconds(60)) ?? leaving.terminate(grace: .seconds(1))
            let leave = (try? String(contentsOfFile: leaveOut, encoding: .utf8)) ?? ""
            #expect(said != nil && leaveEnd == .exited(0) && leave.contains("Left the mesh"), "\(leaveEnd) \(leave)")
            let ended = try #require(job(s, n0, last))
            #expect(ended.state == .succeeded && ended.attempts.count == 1, "\(ended.reason)")
            #expect(s.waitFor(.seconds(10)) { s.status(n0)?.state(of: "n2") == "left" } != nil)
            #expect(record(s, n0, "n2").map { $0.draining && $0.leaving } == true)
            // Back: its agent lifts the drain its leave made, and it takes jobs again.
            _ = try s.startAgent(agents[2].dataDir, name: "n2", join: [agents[0].address], extra: ["--label", "box=w", "--slots", "2"])
            #expect(s.waitFor(.seconds(20)) { record(s, n0, "n2").map { !$0.draining && !$0.cordoned } == true } != nil)
            let back = try submit(s, n0, ["--label", "box=w", "--", "true"])
            #expect(s.waitFor(.seconds(20)) { job(s, n0, back)?.state == .succeeded } != nil)
        }
    }

    @Test("an agent restarted before it learnt any member from the log (its log and snapshot empty) rejoins through the agents it joined through, not alone")
    func restartWithoutLog() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let agents = try s.startMesh(2)
            let n0 = agents[0].dataDir, n1 = agents[1].dataDir
            #expect(s.waitFor(.seconds(20)) { s.status(n0)?.state(of: "n1") == "alive" } != nil)
            agents[1].process.terminate(grace: .seconds(10))
            // As if killed right after `mesh join`: the store exists (a missing one is refused, the
            // node would forget its votes) but holds no entry naming a member.
            let emptied = try ChildProcess.spawn("/usr/bin/env", ["python3", "-c",
                "import sqlite3; c = sqlite3.connect('\(n1)/state.db'); c.execute('DELETE FROM log'); c.execute('DELETE FROM snapshot'); c.commit()"])
            #expect(emptied.wait(timeout: .seconds(20)) == .exited(0))
            _ = try s.startAgent(n1, name: "n1")
            #expect(s.waitFor(.seconds(20)) {
                guard let st = s.status(n1) else { return false }
                return st.aliveNames == ["n0", "n1"] && st.coordinator.leader != 0 && st.coordinator.leader != st.nodeID
            } != nil, "\(String(describing: s.status(n1)?.aliveNames))")
        }
    }

    @Test("the only voter leaves: it first makes the other member a voter and hands over, so the mesh still decides")
    func onlyVoterLeaves() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let agents = try coordinator.mesh(s, count: 2, voters: 1)
            let voter = try #require(coordinator.leaderIndex(s, agents))
            let other = 1 - voter
            let leave = try s.mesh(["leave", "--data-dir", agents[voter].dataDir])
            #expect(leave.exitCode == 0, "\(leave)")
            #expect(s.waitFor(.seconds(10)) {
                guard let st = s.status(agents[other].dataDir) else { return false }
                return st.coordinator.leader == st.nodeID && st.coordinator.voters == [st.nodeID]
            } != nil, "n\(other) coordinates alone")
            let cordon = try s.mesh(["cordon", "n\(other)", "--data-dir", agents[other].dataDir])
            #expect(cordon.exitCode == 0, "\(cordon)")
        }
    }

    @Test("quarantine: a node whose attempts fail to start is cordoned with the reason, its jobs requeued; a canary re-admits it once it is mended; a missing command is the job's failure")
    func quarantine() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let agents = try coordinator.mesh(s, count: 3, voters: 3)
            let n0 = agents[0].dataDir
            try set(s, n0, [("quarantine_after", "2"), ("quarantine_canary_seconds", "1")])
            for n in ["n0", "n1"] { #expect(try s.mesh(["cordon", n, "--data-dir", n0]).exitCode == 0) }
            // A command that does not exist fails the job (127), not the machine.
            let typos = try (0..<3).map { _ in try submit(s, n0, ["--", "/no/such/command"]) }
            #expect(s.waitFor(.seconds(20)) { typos.allSatisfy { job(s, n0, $0)?.state == .failed } } != nil)
            #expect(typos.allSatisfy { job(s, n0, $0)?.attempts.last?.outcome == .exited(127) })
            #expect(record(s, n0, "n2")?.quarantined == false)

            // Break n2: its attempts directory is a file, so no attempt can get a workspace.
            let attempts = agents[2].dataDir + "/attempts"
            try FileManager.default.moveItem(atPath: attempts, toPath: attempts + ".saved")
            _ = FileManager.default.createFile(atPath: attempts, contents: Data("broken".utf8))
            let ids = try (0..<3).map { _ in try submit(s, n0, ["--", "true"]) }
            #expect(s.waitFor(.seconds(20)) { record(s, n0, "n2")?.quarantined == true } != nil)
            let reason = record(s, n0, "n2")?.cordonReason ?? ""
            #expect(reason.contains("quarantined: its last 2 attempts failed to start") && reason.contains("Not a directory"), "\(reason)")
            let status = try s.mesh(["status", "--data-dir", n0])
            #expect(status.stdout.contains("quarantined"), "\(status)")
            #expect(ids.allSatisfy { job(s, n0, $0)?.state == .pending }, "jobs are requeued, not failed")
            // Canaries keep failing while it is broken; mend it and one re-admits it.
            #expect(s.waitFor(.seconds(10)) { jobs.jobs(s, n0).contains { $0.spec.canary && $0.state == .failed } } != nil)
            try FileManager.default.removeItem(atPath: attempts)
            try FileManager.default.moveItem(atPath: attempts + ".saved", toPath: attempts)
            #expect(s.waitFor(.seconds(20)) { record(s, n0, "n2").map { !$0.quarantined && !$0.cordoned } == true } != nil)
            #expect(jobs.jobs(s, n0).contains { $0.spec.canary && $0.state == .succeeded && $0.spec.node?.rawValue == record(s, n0, "n2")?.id })
            #expect(s.waitFor(.seconds(20)) { ids.allSatisfy { job(s, n0, $0)?.state == .succeeded } } != nil)
        }
    }

    @Test("machine setup: join --setup runs the commands with {MACHINE}; a failure keeps the node out with the reason and the output; mesh node setup runs them again and lets it in")
    func machineSetup() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let n0 = try coordinator.mesh(s, count: 1, voters: 1)[0].dataDir
            #expect(try s.mesh(["cordon", "n0", "--data-dir", n0]).exitCode == 0)
            let token = try s.mesh(["token", "--data-dir", n0]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            let marker = s.dir.sub("ran-on-")
            let join = try s.mesh(["join", token, "--data-dir", s.dir.sub("n1"), "--name", "n1", "--listen", "127.0.0.1:0",
                                   "--setup", "touch '\(marker){MACHINE}'", "--setup", "echo the disk is missing; exit 3"])
            #expect(join.exitCode == 1, "\(join)")
            #expect(join.stderr.contains("exited 3") && join.stderr.contains("the disk is missing"), "\(join)")
            #expect(FileManager.default.fileExists(atPath: marker + "127.0.0.1"), "{MACHINE} is the node's address")
            #expect(s.waitFor(.seconds(10)) { s.status(n0)?.member("n1")?.record.meta.setup.hasPrefix("failed") == true } != nil)
            let status = try s.mesh(["status", "--data-dir", n0])
            #expect(status.stdout.contains("setup failed"), "\(status)")
            let waiting = try submit(s, n0, ["--", "true"])
            Thread.sleep(forTimeInterval: 1.5)
            #expect(job(s, n0, waiting)?.state == .pending, "a node whose setup failed takes no jobs")
            let again = try s.mesh(["node", "setup", "n1", "--data-dir", n0, "--", "echo mended on {MACHINE}"])
            #expect(again.exitCode == 0 && again.stdout.contains("mended on 127.0.0.1") && again.stdout.contains("setup done"), "\(again)")
            #expect(s.waitFor(.seconds(20)) { job(s, n0, waiting)?.state == .succeeded } != nil)
            let stored = try String(contentsOfFile: s.dir.sub("n1") + "/setup.json", encoding: .utf8)
            #expect(stored.contains("mended"), "the new list replaces the old: \(stored)")
        }
    }

    @Test("machine setup: a command still running after --setup-timeout is stopped with what it started; the node stays out with the reason; a bad --setup-timeout is refused")
    func setupTimeout() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let n0 = try coordinator.mesh(s, count: 1, voters: 1)[0].dataDir
            let token = try s.mesh(["token", "--data-dir", n0]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            let bad = try s.mesh(["join", token, "--data-dir", s.dir.sub("bad"), "--setup", "true", "--setup-timeout", "0s"])
            #expect(bad.exitCode == 64 && bad.stderr.contains("--setup-timeout"), "\(bad)")
            let pidFile = s.dir.sub("setup-child.pid")
            let join = try s.mesh(["join", token, "--data-dir", s.dir.sub("n1"), "--name", "n1", "--listen", "127.0.0.1:0",
                                   "--setup", "echo waiting for a lock; sleep 300 & echo $! >'\(pidFile)'; wait", "--setup-timeout", "3s"])
            #expect(join.exitCode == 1, "\(join)")
            #expect(join.stderr.contains("did not end within 3 s") && join.stderr.contains("waiting for a lock"), "\(join)")
            #expect(s.waitFor(.seconds(10)) { s.status(n0)?.member("n1")?.record.meta.setup.contains("did not end within 3 s") == true } != nil)
            // The sleep the command started went with it (its process group was stopped).
            let child = (try? String(contentsOfFile: pidFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            #expect(Int32(child) != nil, "the setup command wrote its child's pid")
            let running = { () -> Bool in
                guard let stat = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8),
                      let close = stat.lastIndex(of: ")") else { return false }
                return !stat[stat.index(after: close)...].hasPrefix(" Z")
            }
            #expect(s.waitFor(.seconds(5)) { !running() } != nil, "the setup's child \(child) still runs")
        }
    }

    @Test("scale_up: when a job has waited for capacity the coordinator runs the command, which joins a new agent that runs it (one in flight at a time, however long it takes); idle, that agent leaves and runs its idle command")
    func scaleUpAndIdleShutdown() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let n0 = try coordinator.mesh(s, count: 1, voters: 1)[0].dataDir
            let scaled = s.dir.sub("scaled"), idle = s.dir.sub("idle-ran"), runs = s.dir.sub("scale-up-runs")
            // The command takes a while before its machine joins (the token from $MESH_TOKEN, not
            // its command line). No pause between scale-ups: only scale_up_max keeps a second
            // one from starting while this one is in flight.
            let command = "echo run >> '\(runs)'; sleep 3; '\(MeshBinary.path)' join --data-dir '\(scaled)' --name scaled --listen 127.0.0.1:0 "
                + "--idle-shutdown-after 6s --idle-shutdown-cmd 'echo $MESH_TOKEN. > \(idle)'"
            try set(s, n0, [("scale_up", command), ("scale_up_after_seconds", "1"), ("scale_up_pause_seconds", "0"), ("scale_up_max", "1")])
            let gate = s.dir.sub("gate")
            let busy = try submit(s, n0, ["--", "sh", "-c", "while [ ! -e \(gate) ]; do sleep 0.05; done"])
            #expect(s.waitFor(.seconds(20)) { job(s, n0, busy)?.state == .running } != nil)
            let waiting = try submit(s, n0, ["--", "sh", "-c", "echo on $MESH_NODE"])
            #expect(s.waitFor(.seconds(40)) { job(s, n0, waiting)?.state == .succeeded } != nil, "\(String(describing: job(s, n0, waiting)))")
            let ran = try #require(job(s, n0, waiting)?.current?.node)
            #expect(record(s, n0, "scaled")?.id == ran.rawValue, "the waiting job ran on the new node")
            #expect(job(s, n0, busy)?.state == .running, "the first job still holds n0's only slot")
            _ = FileManager.default.createFile(atPath: gate, contents: nil)
            let log = (try? String(contentsOfFile: n0 + "/scale-up.log", encoding: .utf8)) ?? ""
            #expect(log.contains("Joined mesh"), "\(log)")
            let count = ((try? String(contentsOfFile: runs, encoding: .utf8)) ?? "").split(separator: "\n").count
            #expect(count == 1, "one scale-up in flight at a time: the command ran \(count) times")
            // Idle for 6 s (time enough to join and be given the job first, on a loaded machine):
            // it drains, leaves, runs its command (which never sees the token), and its agent stops.
            // (Until its line is written: the shell creates the file before echo writes to it.)
            #expect(s.waitFor(.seconds(40)) { (try? String(contentsOfFile: idle, encoding: .utf8))?.hasSuffix("\n") == true } != nil)
            #expect((try? String(contentsOfFile: idle, encoding: .utf8)) == ".\n", "the idle command's environment has no MESH_TOKEN")
            #expect(s.waitFor(.seconds(10)) { s.status(n0)?.state(of: "scaled") == "left" } != nil)
            #expect(s.waitFor(.seconds(10)) { AgentLauncher.runningAgent(DataDirectory(path: scaled)) == nil } != nil)
        }
    }

    @Test("rolling upgrade of three nodes with jobs running: each agent is stopped and started from a replaced binary in turn; versions mix, no job is lost or run twice")
    func rollingUpgrade() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let old = ["MESH_TEST_VERSION": "0.3.0-old"], new = ["MESH_TEST_VERSION": "0.3.1-new"]
            let first = try s.dataDirectory("n0")
            let secret = try s.secret(of: first)
            var agents = [try s.startAgent(first, name: "n0", extra: ["--slots", "2"], environment: old)]
            for i in 1..<3 {
                agents.append(try s.startAgent(try s.dataDirectory("n\(i)", secret: secret), name: "n\(i)", join: [agents[0].address],
                                               extra: ["--slots", "2"], environment: old))
            }
            #expect(s.waitFor(.seconds(30)) { agents.allSatisfy { s.status($0.dataDir)?.coordinator.voters.count == 3 } } != nil)
            let witness = s.dir.sub("witness"), gate = s.dir.sub("gate")
            // Every job runs until the upgrade is over (the gate), however slowly they started.
            let ids = try (0..<6).map { _ in
                try submit(s, agents[0].dataDir, ["--", "sh", "-c", "echo start $MESH_JOB_ID.$MESH_ATTEMPT >> \(witness); "
                    + "while [ ! -e \(gate) ]; do sleep 0.05; done; echo end $MESH_JOB_ID >> \(witness)"])
            }
            #expect(s.waitFor(.seconds(20)) { ids.allSatisfy { job(s, agents[0].dataDir, $0)?.state == .running } } != nil)
            // The new release: a copy of the binary in another place (the old one stays as it was).
            let binary = s.dir.sub("mesh-new")
            // (cp in a child: a copy written here could be open in a child another test forks
            // meanwhile, and exec would fail with ETXTBSY.)
            let cp = try ChildProcess.spawn("/bin/cp", [MeshBinary.path, binary])
            #expect(cp.wait(timeout: .seconds(30)) == .exited(0))
            var sawMixed = false
            for i in 0..<3 {
                let observer = agents[(i + 1) % 3].dataDir
                agents[i].process.terminate(grace: .seconds(10))
                let others = agents.indices.filter { $0 != i }.map { agents[$0].address }
                agents[i] = try s.startAgent(agents[i].dataDir, name: "n\(i)", join: others, extra: ["--slots", "2"], environment: new, binary: binary)
                let back = s.waitFor(.seconds(30)) {
                    guard let st = s.status(observer), let m = st.member("n\(i)") else { return false }
                    return m.record.state == .alive && m.record.meta.version == "0.3.1-new" && st.coordinator.leader != 0
                }
                #expect(back != nil, "n\(i) back with the new release")
                if i < 2 {
                    let status = try s.mesh(["status", "--data-dir", observer])
                    sawMixed = sawMixed || status.stdout.contains("mixed versions: 0.3.0-old (\(2 - i)), 0.3.1-new (\(i + 1))")
                }
            }
            #expect(sawMixed, "status names the mixed versions during the upgrade")
            #expect(ids.allSatisfy { job(s, agents[0].dataDir, $0)?.state == .running }, "every job ran through the upgrade")
            _ = FileManager.default.createFile(atPath: gate, contents: nil)
            let n0 = agents[0].dataDir
            #expect(s.waitFor(.seconds(60)) { ids.allSatisfy { job(s, n0, $0)?.state == .succeeded } } != nil,
                    "\(ids.map { job(s, n0, $0).map { "\($0.id) \($0.state) \($0.reason)" } ?? "?" })")
            let lines = ((try? String(contentsOfFile: witness, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
            for id in ids {
                #expect(lines.filter { $0 == "start \(id).1" }.count == 1 && lines.filter { $0.hasPrefix("start \(id).") }.count == 1,
                        "job \(id) ran once, as attempt 1 (its supervisor outlived the agent's restart): \(lines)")
            }
            // The upgraded mesh runs new work.
            let after = try submit(s, n0, ["--", "true"])
            #expect(s.waitFor(.seconds(20)) { job(s, n0, after)?.state == .succeeded } != nil)
        }
    }
}
