import Foundation
import MeshAgent
import MeshCore
import MeshTestSupport
import MeshWire
import Testing

/// Jobs between real `mesh` processes on loopback: real supervisors, real child processes.
@Suite("mesh jobs, real processes")
struct JobProcessTests {
    let coordinator = CoordinatorProcessTests()

    /// `mesh ARGS` run from `directory` (submit packs the checkout it runs in).
    func mesh(_ s: Scratch, in directory: String, _ args: [String], timeout: Duration = .seconds(60)) throws -> CommandResult {
        let quoted = args.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
        let out = directory + "/.out-\(UInt32.random(in: 0 ... .max))", err = out + ".err"
        let started = ContinuousClock.now
        let p = try ChildProcess.spawn("/bin/sh", ["-c", "cd '\(directory)' && exec '\(MeshBinary.path)' \(quoted)"], stdout: out, stderr: err)
        let status = p.wait(timeout: timeout) ?? p.terminate(grace: .seconds(1))
        defer { unlink(out); unlink(err) }
        return CommandResult(status: status, stdout: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
                             stderr: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "", elapsed: ContinuousClock.now - started)
    }

    /// A git checkout with `files` committed.
    func repository(_ s: Scratch, _ files: [String: String]) throws -> String {
        let repo = s.dir.sub("repo-\(UInt32.random(in: 0 ... .max))")
        try FileManager.default.createDirectory(atPath: repo, withIntermediateDirectories: true)
        for (name, text) in files {
            let path = repo + "/" + name
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }
        let git = try ChildProcess.spawn("/bin/sh", ["-c", "cd '\(repo)' && git init -q && git add -A && git -c user.email=t@t -c user.name=t commit -qm init"])
        guard git.wait(timeout: .seconds(20)) == .exited(0) else { throw Failure("git init failed") }
        return repo
    }

    func jobs(_ s: Scratch, _ dataDir: String, _ ids: [JobID] = []) -> [Job] {
        guard let secret = try? s.secret(of: dataDir),
              let c = try? MeshClient(address: DataDirectory(path: dataDir).localAddress, secret: secret) else { return [] }
        defer { c.close() }
        return (try? c.jobs(ids)) ?? []
    }

    func nodeName(_ s: Scratch, _ dataDir: String, _ id: NodeID) -> String? {
        s.status(dataDir)?.nodes.first { $0.id == id.rawValue }?.name
    }

    @Test("submit through a follower; the job runs on another node; its log and results are read from a third; a copy lands on the submitting node")
    func submitFollowerRunElsewhereReadThird() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let agents = try coordinator.mesh(s, count: 3, voters: 3) { $0 == 2 ? ["--label", "gpu=yes"] : [] }
            let leader = try #require(coordinator.leaderIndex(s, agents))
            // The worker is n2 (the only node with the label); submit through a follower that is not n2.
            let via = [0, 1].first { $0 != leader }!
            let reader = [0, 1, 2].first { $0 != via && $0 != 2 } ?? 2
            let repo = try repository(s, [
                "exp/train.py": """
                    import os
                    print("training on", os.environ["MESH_NODE"], "job", os.environ["MESH_JOB_ID"], "attempt", os.environ["MESH_ATTEMPT"])
                    os.makedirs("out", exist_ok=True)
                    open("out/metrics.json", "w").write('{"loss": 0.5}')
                    print("RESULTS: out")
                    """,
            ])
            let submit = try mesh(s, in: repo + "/exp", ["submit", "--data-dir", agents[via].dataDir, "--label", "gpu=yes", "--wait", "--", "python3", "train.py"])
            #expect(submit.exitCode == 0, "\(submit)")
            let job = try #require(jobs(s, agents[reader].dataDir).last)
            #expect(job.state == .succeeded)
            #expect(job.current.flatMap { nodeName(s, agents[0].dataDir, $0.node) } == "n2")
            #expect(job.provenance.code == .git && job.provenance.commit.count == 40)
            #expect(job.provenance.bundle.map { $0.holders.count >= 2 } == true, "the bundle is on two nodes before the ack")
            #expect(job.results.map(\.path) == ["exp/out/metrics.json"])
            let logs = try s.mesh(["logs", "\(job.id)", "--data-dir", agents[reader].dataDir])
            #expect(logs.exitCode == 0 && logs.stdout.contains("training on n2 job \(job.id) attempt 1"), "\(logs)")
            let dest = s.dir.sub("results")
            let results = try s.mesh(["results", "\(job.id)", dest, "--data-dir", agents[reader].dataDir])
            #expect(results.exitCode == 0, "\(results)")
            #expect((try? String(contentsOfFile: dest + "/exp/out/metrics.json", encoding: .utf8)) == #"{"loss": 0.5}"#)
            // The node that took the submission holds a copy of the results and the log.
            let hash = try #require(job.resultsBundle?.hash)
            #expect(s.waitFor(.seconds(10)) { FileManager.default.fileExists(atPath: agents[via].dataDir + "/blobs/" + hash) } != nil)
            let show = try s.mesh(["show", "last", "--data-dir", agents[via].dataDir])
            #expect(show.exitCode == 0 && show.stdout.contains("attempt 1 on n2"), "\(show)")
        }
    }

    @Test("kill -9 the worker mid-job: the job runs again as attempt 2 after the lease, and attempt 1's late report is refused")
    func workerKilled() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let agents = try coordinator.mesh(s, count: 3, voters: 3)
            // The coordinator also waits for kill_grace + 1 s (a job may ignore SIGTERM that long).
            for (k, v) in [("lease_seconds", "4"), ("lease_grace_seconds", "1"), ("kill_grace_seconds", "1")] {
                let set = try s.mesh(["set", k, v, "--data-dir", agents[0].dataDir])
                #expect(set.exitCode == 0, "\(set)")
            }
            let witness = s.dir.sub("witness")
            let script = "echo start $MESH_ATTEMPT >> \(witness); if [ $MESH_ATTEMPT = 1 ]; then sleep 30; fi; echo end $MESH_ATTEMPT >> \(witness)"
            let submit = try s.mesh(["submit", "--no-code", "--data-dir", agents[0].dataDir, "--", "sh", "-c", script])
            #expect(submit.exitCode == 0, "\(submit)")
            var worker: Int?
            _ = s.waitFor(.seconds(20)) {
                guard let j = jobs(s, agents[0].dataDir).first, j.state == .running, let node = j.current?.node else { return false }
                worker = agents.firstIndex { s.status($0.dataDir)?.nodeID == node.rawValue }
                return worker != nil
            }
            let w = try #require(worker)
            let observer = agents[(w + 1) % 3]
            let killed = ContinuousClock.now
            agents[w].process.signal(SIGKILL)
            _ = agents[w].process.wait(timeout: .seconds(5))
            let rerun = s.waitFor(.seconds(60)) { jobs(s, observer.dataDir).first?.state == .succeeded }
            #expect(rerun != nil, "job: \(String(describing: jobs(s, observer.dataDir).first))")
            print("jobs, real agents: kill -9 of the worker → attempt 2 succeeded elsewhere in \(ContinuousClock.now - killed) (lease 4 s + max(grace 1 s, kill grace 1 s + 1 s))")
            let job = try #require(jobs(s, observer.dataDir).first)
            #expect(job.attempts.count == 2)
            if case .lost? = job.attempts.first?.outcome {} else { Issue.record("attempt 1: \(String(describing: job.attempts.first?.outcome))") }
            #expect(job.attempts.last?.outcome == .exited(0))
            // The supervisor of attempt 1 killed it when its lease ran out, before attempt 2 began.
            let lines = ((try? String(contentsOfFile: witness, encoding: .utf8)) ?? "").split(separator: "\n")
            #expect(lines == ["start 1", "start 2", "end 2"], "\(lines)")
            // The worker comes back: it reports attempt 1's end, which is refused as stale.
            let back = try s.startAgent(agents[w].dataDir, name: "n\(w)", join: [observer.address])
            #expect(s.waitFor(.seconds(20)) { back.logText.contains("refused a report") } != nil, "\(back.logText)")
            let after = try #require(jobs(s, observer.dataDir).first)
            #expect(after.state == .succeeded && after.attempts.count == 2 && after.attempts.last?.outcome == .exited(0))
        }
    }

    @Test("kill -9 the coordinator during a batch of 50 jobs and restart it: every job succeeds, each exactly once")
    func coordinatorKilledDuringBatch() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            var agents = try coordinator.mesh(s, count: 3, voters: 3) { _ in ["--slots", "4"] }
            let secret = try s.secret(of: agents[0].dataDir)
            let l = try #require(coordinator.leaderIndex(s, agents))
            let survivor = agents[(l + 1) % 3]
            let witness = s.dir.sub("witness")
            let script = "exec 9>>\(witness); flock 9; echo $MESH_JOB_ID $MESH_ATTEMPT >&9; flock -u 9; sleep 0.3"
            let client = try MeshClient(address: DataDirectory(path: survivor.dataDir).localAddress, secret: secret)
            defer { client.close() }
            var ids: [JobID] = []
            for i in 0..<50 {
                if i == 15 {
                    agents[l].process.signal(SIGKILL)
                    _ = agents[l].process.wait(timeout: .seconds(5))
                }
                if i == 30 { agents[l] = try s.startAgent(agents[l].dataDir, name: "n\(l)", join: [survivor.address], extra: ["--slots", "4"]) }
                let (outcome, _) = try client.write(.submit(JobSpec(name: "batch \(i)", command: ["sh", "-c", script]), Provenance(), at: 0, via: NodeID(0)), timeout: .seconds(60))
                guard case .created(let created, _) = outcome else { throw Failure("submit \(i): \(outcome)") }
                ids += created
            }
            let done = s.waitFor(.seconds(90)) { jobs(s, survivor.dataDir).filter { $0.state.isTerminal }.count == 50 }
            let all = jobs(s, survivor.dataDir)
            #expect(done != nil, "\(all.filter { !$0.state.isTerminal }.map { "\($0.id) \($0.state) \($0.reason)" })")
            #expect(all.allSatisfy { $0.state == .succeeded }, "\(all.filter { $0.state != .succeeded }.map { "\($0.id) \($0.state) \($0.reason)" })")
            let runs = ((try? String(contentsOfFile: witness, encoding: .utf8)) ?? "").split(separator: "\n").map { $0.split(separator: " ")[0] }
            var counts: [Substring: Int] = [:]
            for r in runs { counts[r, default: 0] += 1 }
            #expect(Set(counts.keys) == Set(ids.map { Substring("\($0)") }), "jobs that never ran: \(Set(ids.map { Substring("\($0)") }).subtracting(counts.keys))")
            #expect(counts.values.allSatisfy { $0 == 1 }, "ran more than once: \(counts.filter { $0.value > 1 })")
        }
    }

    @Test("hostile jobs and bad submits: results outside the workspace, a log flood, a job that ignores SIGTERM and leaves a daemon, a bundle over the limit, unsatisfiable and malformed requests, a checkout mid-merge")
    func hostile() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let agents = try coordinator.mesh(s, count: 1, voters: 1)
            let d = agents[0].dataDir
            _ = try s.mesh(["set", "kill_grace_seconds", "1", "--data-dir", d])
            let outside = s.dir.sub("outside-secret")
            try "secret".write(toFile: outside, atomically: true, encoding: .utf8)
            // Results that point out of the workspace are refused; the job itself succeeds.
            let escape = try s.mesh(["submit", "--no-code", "--wait", "--data-dir", d, "--results", "*", "--", "sh", "-c",
                                     "ln -s / root; ln -s \(outside) leak; echo 'RESULTS: ../../../../../etc/passwd'; echo 'RESULTS: root/etc/passwd'; echo 'RESULTS: \(outside)'; echo ok > fine.txt"])
            #expect(escape.exitCode == 0, "\(escape)")
            let j1 = try #require(jobs(s, d).last)
            #expect(j1.results.map(\.path) == ["fine.txt"], "\(j1.results)")
            // A log flood is capped; the job still succeeds and the agent keeps going.
            let flood = try s.mesh(["submit", "--no-code", "--wait", "--data-dir", d, "--", "sh", "-c", "head -c 100000000 /dev/zero | tr '\\0' x"])
            #expect(flood.exitCode == 0, "\(flood)")
            let j2 = try #require(jobs(s, d).last)
            #expect(j2.current.map { $0.logBytes < 65 << 20 && $0.logBytes >= 64 << 20 } == true, "log \(String(describing: j2.current?.logBytes))")
            // Ignores SIGTERM and leaves a daemon in its own session: the timeout kills both.
            let marker = "sleep 1717"
            let stubborn = try s.mesh(["submit", "--no-code", "--wait", "--timeout", "1s", "--data-dir", d, "--", "sh", "-c",
                                       "trap '' TERM; setsid sh -c '\(marker)' & \(marker)"])
            #expect(stubborn.exitCode == 1, "\(stubborn)")
            let j3 = try #require(jobs(s, d).last)
            #expect(j3.current?.outcome == .timedOut)
            let left = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.filter { p in
                guard Int32(p) != nil, let c = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(p)/cmdline")) else { return false }
                return String(decoding: c, as: UTF8.self).contains("1717")
            } ?? []
            #expect(left.isEmpty, "processes left behind: \(left)")
            // A bundle over the limit.
            let big = try repository(s, ["data.bin": String(repeating: "y", count: 2 << 20), "run.sh": "true"])
            let tooBig = try mesh(s, in: big, ["submit", "--max-bundle", "1", "--data-dir", d, "--", "sh", "run.sh"])
            #expect(tooBig.exitCode == 1 && tooBig.stderr.contains("over 1 MiB"), "\(tooBig)")
            // Unsatisfiable, missing command, unknown option.
            let gpus = try s.mesh(["submit", "--no-code", "--gpus", "8", "--data-dir", d, "--", "true"])
            #expect(gpus.exitCode == 1 && gpus.stderr.contains("GPU"), "\(gpus)")
            let none = try s.mesh(["submit", "--no-code", "--data-dir", d])
            #expect(none.exitCode == 64 && none.stderr.contains("no command"), "\(none)")
            let unknown = try s.mesh(["submit", "--frobnicate", "--data-dir", d, "--", "true"])
            #expect(unknown.exitCode == 64 && unknown.stderr.contains("frobnicate"), "\(unknown)")
            // Mid-merge.
            let repo = try repository(s, ["a.txt": "a"])
            _ = FileManager.default.createFile(atPath: repo + "/.git/MERGE_HEAD", contents: Data("0000000000000000000000000000000000000000\n".utf8))
            let merge = try mesh(s, in: repo, ["submit", "--data-dir", d, "--", "true"])
            #expect(merge.exitCode == 1 && merge.stderr.contains("merge"), "\(merge)")
            // Through all of it the agent kept running, and still runs jobs.
            let ok = try s.mesh(["submit", "--no-code", "--wait", "--data-dir", d, "--", "true"])
            #expect(ok.exitCode == 0, "\(ok)")
        }
    }

    @Test("from the command line: cancel a running job (its processes end), hold and release, --after waits for its dependency, retry a failed job, --follow streams the log, --token from a machine with no agent")
    func lifecycle() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let agents = try coordinator.mesh(s, count: 1, voters: 1)
            let d = agents[0].dataDir
            #expect(try s.mesh(["set", "kill_grace_seconds", "1", "--data-dir", d]).exitCode == 0)
            func last() -> Job? { jobs(s, d).last }
            func state(_ id: JobID) -> JobState? { jobs(s, d, [id]).first?.state }

            // Cancel a running job: SIGTERM reaches its process group.
            #expect(try s.mesh(["submit", "--no-code", "--data-dir", d, "--", "sh", "-c", "sleep 2323"]).exitCode == 0)
            let running = try #require(last())
            #expect(s.waitFor(.seconds(20)) { state(running.id) == .running } != nil)
            let cancel = try s.mesh(["cancel", "last", "--reason", "wrong lr", "--data-dir", d])
            #expect(cancel.exitCode == 0, "\(cancel)")
            #expect(s.waitFor(.seconds(20)) { state(running.id) == .cancelled } != nil)
            #expect(jobs(s, d, [running.id]).first?.current?.outcome == .cancelled)
            #expect(jobs(s, d, [running.id]).first?.history.contains { $0.reason.contains("wrong lr") } == true)
            let left = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.filter { p in
                guard Int32(p) != nil, let c = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(p)/cmdline")) else { return false }
                return String(decoding: c, as: UTF8.self).contains("sleep 2323")
            } ?? []
            #expect(left.isEmpty, "still running after cancel: \(left)")

            // Held, then a job after it waits; release runs both in order.
            #expect(try s.mesh(["submit", "--no-code", "--hold", "--data-dir", d, "--", "true"]).exitCode == 0)
            let held = try #require(last())
            #expect(held.state == .held)
            #expect(try s.mesh(["submit", "--no-code", "--after", "last", "--data-dir", d, "--", "true"]).exitCode == 0)
            let after = try #require(last())
            #expect(after.state == .waiting, "\(after.state) \(after.reason)")
            #expect(try s.mesh(["release", "\(held.id)", "--data-dir", d]).exitCode == 0)
            #expect(s.waitFor(.seconds(20)) { state(after.id) == .succeeded } != nil)
            let first = try #require(jobs(s, d, [held.id]).first?.current?.endedAt)
            let second = try #require(jobs(s, d, [after.id]).first?.current?.startedAt)
            #expect(second >= first)

            // A failed job, retried: a new attempt, which succeeds this time.
            let flag = s.dir.sub("flag")
            let failing = try s.mesh(["submit", "--no-code", "--wait", "--data-dir", d, "--", "sh", "-c", "test -f \(flag) || { touch \(flag); exit 3; }"])
            #expect(failing.exitCode == 3, "--wait exits with the job's code: \(failing)")
            let failed = try #require(last())
            #expect(failed.state == .failed)
            #expect(try s.mesh(["retry", "last", "--data-dir", d]).exitCode == 0)
            #expect(s.waitFor(.seconds(20)) { state(failed.id) == .succeeded } != nil)
            #expect(jobs(s, d, [failed.id]).first?.attempts.count == 2)

            // --follow streams the log as it grows and exits with the job's code.
            let follow = try s.mesh(["submit", "--no-code", "--follow", "--data-dir", d, "--", "sh", "-c", "echo one; sleep 0.5; echo two"])
            #expect(follow.exitCode == 0 && follow.stdout == "one\ntwo\n", "\(follow)")

            // A laptop with no agent and no key: the token is enough.
            let token = try s.mesh(["token", "--data-dir", d]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            let laptop = s.dir.sub("laptop")
            let remote = try s.mesh(["submit", "--no-code", "--token", token, "--wait", "--", "true"], environment: ["MESH_HOME": laptop])
            #expect(remote.exitCode == 0, "\(remote)")
            #expect(FileManager.default.fileExists(atPath: laptop + "/last-job"))
            let jobsRemote = try s.mesh(["jobs", "--token", token, "--state", "succeeded"], environment: ["MESH_HOME": laptop])
            // A header and the five jobs that succeeded: held, after, retried, followed, this one.
            #expect(jobsRemote.exitCode == 0 && jobsRemote.stdout.split(separator: "\n").count == 6, "\(jobsRemote)")
            let badToken = try s.mesh(["jobs", "--token", "mesh1-nonsense"], environment: ["MESH_HOME": laptop])
            #expect(badToken.exitCode == 64, "\(badToken)")
            // Unknown jobs and states are clear errors.
            let unknown = try s.mesh(["show", "9999", "--data-dir", d])
            #expect(unknown.exitCode == 1 && unknown.stderr.contains("no job 9999"), "\(unknown)")
            let badState = try s.mesh(["jobs", "--state", "sleeping", "--data-dir", d])
            #expect(badState.exitCode == 64, "\(badState)")
            // Every supervisor the agent started has been reaped: no zombies pile up.
            let agentPID = agents[0].process.pid
            let zombies = { () -> [String] in
                ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).filter { p in
                    guard Int32(p) != nil, let stat = try? String(contentsOfFile: "/proc/\(p)/stat", encoding: .utf8),
                          let close = stat.lastIndex(of: ")") else { return false }
                    let fields = stat[stat.index(after: close)...].split(separator: " ")
                    return fields.count > 1 && fields[0] == "Z" && Int32(fields[1]) == agentPID
                }
            }
            #expect(s.waitFor(.seconds(5)) { zombies().isEmpty } != nil, "zombie supervisors: \(zombies())")
        }
    }
}
