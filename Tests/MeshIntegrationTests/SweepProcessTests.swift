import Foundation
import MeshAgent
import MeshCore
import MeshTestSupport
import Testing

/// Plans and matrices between real `mesh` processes (DESIGN.md §7).
@Suite("mesh plans, real processes")
struct SweepProcessTests {
    let coordinator = CoordinatorProcessTests()

    func sweeps(_ s: Scratch, _ dataDir: String) -> [(sweep: Sweep, states: [String: Int])] {
        guard let secret = try? s.secret(of: dataDir),
              let c = try? MeshClient(address: DataDirectory(path: dataDir).localAddress, secret: secret) else { return [] }
        defer { c.close() }
        return (try? c.sweeps()) ?? []
    }

    func jobs(_ s: Scratch, _ dataDir: String) -> [Job] { JobProcessTests().jobs(s, dataDir) }

    func files(_ dir: String) -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() }

    @Test("a plan of 300 jobs in three stages on three agents: every job once, each after its dependency, export has a row per job")
    func threeHundred() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let agents = try coordinator.mesh(s, count: 3, voters: 3) { _ in ["--slots", "2"] }
            let w = s.dir.sub("witness")
            try FileManager.default.createDirectory(atPath: w, withIntermediateDirectories: true)
            // Each stage checks that its dependency's file exists before it writes its own: a job
            // started too early exits 9 and fails the plan.
            let plan = s.dir.sub("big.yaml")
            try """
                script: |
                  test -z "{prev}" || test -e {w}/{prev} || exit 9
                  test ! -e {w}/{a}-{b}-{name} || exit 8
                  echo "$MESH_PARAM_A $MESH_PARAM_B" > {w}/{a}-{b}-{name}
                sweep:
                  w: \(w)
                  a: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
                  b: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
                stages:
                  - name: s1
                    prev: ""
                  - name: s2
                    prev: "{a}-{b}-s1"
                    dep: $(s1.name)
                  - name: s3
                    prev: "{a}-{b}-s2"
                    dep: $(s2.name)
                """.write(toFile: plan, atomically: true, encoding: .utf8)
            let dry = try s.mesh(["plan", plan, "--dry-run", "--no-code", "--data-dir", agents[1].dataDir])
            #expect(dry.exitCode == 0, "\(dry)")
            #expect(dry.stdout.hasPrefix("big.yaml: 300 jobs; nothing submitted"), "\(dry)")
            #expect(sweeps(s, agents[0].dataDir).isEmpty)

            let r = try s.mesh(["plan", plan, "--no-code", "--wait", "--data-dir", agents[1].dataDir], timeout: .seconds(240))
            #expect(r.exitCode == 0, "\(r)")
            #expect(r.stdout.contains("sweep s1: 300 cells, 300 new jobs"), "\(r)")
            let written = files(w)
            #expect(written.count == 300)
            #expect(written.contains("9-9-s3"))
            let sw = try #require(sweeps(s, agents[2].dataDir).first)
            #expect(sw.states == ["succeeded": 300])

            let export = try s.mesh(["export", "s1", "--csv", "--data-dir", agents[2].dataDir])
            let lines = export.stdout.split(separator: "\n")
            #expect(lines.count == 301, "\(export)")
            #expect(lines.first?.hasPrefix("job,sweep,stage,combination,w,a,b,name,prev,dep,state") == true, "\(lines.first ?? "")")
            let show = try s.mesh(["show", "s1", "--data-dir", agents[0].dataDir])
            #expect(show.stdout.contains("A  B  S1"), "\(show)")
            #expect(show.stdout.contains("300 (300 new, 0 reused): 300 succeeded"), "\(show)")
        }
    }

    @Test("a failed cell fails its dependents with the reason; --resume runs only what did not succeed; hostile values never execute")
    func resumeAndCanaries() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let agents = try coordinator.mesh(s, count: 3, voters: 3) { _ in ["--slots", "2"] }
            let w = s.dir.sub("witness")
            try FileManager.default.createDirectory(atPath: w, withIntermediateDirectories: true)
            let canary = s.dir.sub("canary")
            let flag = s.dir.sub("fail-2")
            try "".write(toFile: flag, atomically: true, encoding: .utf8)
            let plan = s.dir.sub("plan.yaml")
            try """
                script: |
                  echo {note} >> {w}/{i}-{name}
                  test ! -e {flag_dir}/fail-{i}
                sweep:
                  w: \(w)
                  flag_dir: \(s.dir.path)
                  i: [1, 2, 3]
                  note: ["a;touch \(canary)1", "$(touch \(canary)2)", "`touch \(canary)3`", "x'; touch \(canary)4; echo '", "l1\\ntouch \(canary)5"]
                stages:
                  - name: first
                  - name: second
                    after_first: $(first.i)
                """.write(toFile: plan, atomically: true, encoding: .utf8)
            let first = try s.mesh(["plan", plan, "--no-code", "--wait", "--data-dir", agents[0].dataDir], timeout: .seconds(120))
            #expect(first.exitCode == 1, "\(first)")
            let jobs = try #require(sweeps(s, agents[0].dataDir).first)
            #expect(jobs.states == ["succeeded": 20, "failed": 10])
            let failedList = try s.mesh(["jobs", "--sweep", "s1", "--state", "failed", "--json", "--data-dir", agents[1].dataDir])
            let failed = try JSONSerialization.jsonObject(with: Data(failedList.stdout.utf8)) as! [[String: Any]]
            #expect(failed.count == 10)
            let reasons = failed.map { $0["reason"] as! String }
            #expect(reasons.filter { $0.hasPrefix("dependency ") && $0.hasSuffix(" failed") }.count == 5, "\(reasons)")
            #expect(reasons.filter { $0 == "attempt 1 exited 1" }.count == 5, "\(reasons)")

            // Hostile values reached the jobs as text.
            for n in 1...5 { #expect(!FileManager.default.fileExists(atPath: canary + "\(n)"), "canary \(n) executed") }
            let note = try String(contentsOfFile: w + "/1-first", encoding: .utf8)
            #expect(note.contains("$(touch \(canary)2)"), "\(note)")
            #expect(note.contains("x'; touch \(canary)4; echo '"), "\(note)")

            unlink(flag)
            let again = try s.mesh(["plan", plan, "--no-code", "--resume", "--wait", "--data-dir", agents[2].dataDir], timeout: .seconds(120))
            #expect(again.exitCode == 0, "\(again)")
            #expect(again.stdout.contains("30 cells, 0 new jobs, 30 reused"), "\(again)")
            // Only the cells with i=2 ran again: their first stage twice in all, their second once.
            #expect(files(w) == ["1-first", "1-second", "2-first", "2-second", "3-first", "3-second"])
            for f in files(w) {
                let runs = ((try? String(contentsOfFile: w + "/" + f, encoding: .utf8)) ?? "").split(separator: "\n").filter { $0.contains(canary) }.count
                #expect(runs == (f == "2-first" ? 10 : 5), "\(f): \(runs) jobs wrote to it")
            }
            #expect(sweeps(s, agents[0].dataDir).last?.states == ["succeeded": 30])

            // Over the mesh's limit (settable): refused before expansion, with the count; nothing submitted.
            #expect(try s.mesh(["set", "max_plan_jobs", "20", "--data-dir", agents[0].dataDir]).exitCode == 0)
            let over = try s.mesh(["plan", plan, "--no-code", "--fresh", "--data-dir", agents[1].dataDir])
            #expect(over.exitCode == 1)
            #expect(over.stderr.contains("the plan makes 30 jobs"), "\(over)")
            #expect(over.stderr.contains("mesh set max_plan_jobs 30"), "\(over)")
            #expect(try s.mesh(["set", "max_plan_jobs", "100", "--data-dir", agents[0].dataDir]).exitCode == 0)
            // --resume of a plan whose values changed: nothing of it ran before, so it is refused.
            let edited = s.dir.sub("edited.yaml")
            try String(contentsOfFile: plan, encoding: .utf8).replacingOccurrences(of: "i: [1, 2, 3]", with: "i: [4, 5, 6]")
                .write(toFile: edited, atomically: true, encoding: .utf8)
            let stale = try s.mesh(["plan", edited, "--no-code", "--resume", "--data-dir", agents[1].dataDir])
            #expect(stale.exitCode == 1)
            #expect(stale.stderr.contains("none of its 30 jobs has been submitted before"), "\(stale)")

            // A plan with a mistake is refused with its line; nothing is submitted.
            let bad = s.dir.sub("bad.yaml")
            try "script: echo {i}\nsweep:\n  i: [1, 2]\nstages:\n  - name: a\n    x: $(b.i)\n  - name: b\n".write(toFile: bad, atomically: true, encoding: .utf8)
            let refused = try s.mesh(["plan", bad, "--no-code", "--data-dir", agents[0].dataDir])
            #expect(refused.exitCode == 1)
            #expect(refused.stderr.contains("bad.yaml: line 6: $(b.i) refers to a later stage"), "\(refused)")
            // The refused --resume left an abandoned sweep (s3) and no jobs.
            #expect(sweeps(s, agents[0].dataDir).map(\.sweep.status) == [.submitted, .submitted, .abandoned])
            #expect(self.jobs(s, agents[0].dataDir).count == 30)

            // A held matrix, cancelled as a sweep.
            let held = try s.mesh(["submit", "--no-code", "--hold", "--matrix", "x=1,2,3", "-x", "2", "--data-dir", agents[1].dataDir, "--", "echo", "{x}"])
            #expect(held.stdout.contains("sweep s4: 6 cells, 6 new jobs"), "\(held)")
            let cancel = try s.mesh(["cancel", "s4", "--data-dir", agents[1].dataDir])
            #expect(cancel.exitCode == 0, "\(cancel)")
            #expect(sweeps(s, agents[0].dataDir).last?.states == ["cancelled": 6])
            let retry = try s.mesh(["retry", "s4", "--failed", "--data-dir", agents[1].dataDir])
            #expect(retry.stderr.contains("no job to change"), "\(retry)")
        }
    }
}
