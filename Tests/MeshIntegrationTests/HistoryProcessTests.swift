import Foundation
import MeshAgent
import MeshCore
import MeshTestSupport
import MeshWire
import Testing

/// Replies that no longer grow with the history: with tens of thousands of jobs `mesh status`
/// and `mesh jobs` answer from counts and pages, and the agent goes on answering everyone.
@Suite("history, real processes")
struct HistoryProcessTests {
    @Test("30,000 held jobs: status shows counts, jobs a page (or all, paged), and the agent keeps answering")
    func manyJobs() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let agents = try s.startMesh(1)
            let d = agents[0].dataDir
            for _ in 0..<3 {
                let sweep = try s.mesh(["submit", "--data-dir", d, "--hold", "--no-code", "-x", "10000", "--", "true"], timeout: .seconds(120))
                #expect(sweep.exitCode == 0, "\(sweep)")
            }
            // 0.3 shipped every unfinished job with each status: 2 s at 50,000 held jobs, and near
            // 60,000 a reply over the frame that the client dropped, with the agent wedged after.
            let status = try s.mesh(["status", "--data-dir", d])
            #expect(status.exitCode == 0 && status.stdout.contains("queue: 30000 held"), "\(status)")
            let page = try s.mesh(["jobs", "--data-dir", d])
            let rows = page.stdout.split(separator: "\n").filter { $0.contains(" held ") }
            #expect(page.exitCode == 0 && rows.count == 50 && page.stdout.contains("--limit N or --all"), "\(page.stdout.suffix(300))")
            #expect(rows.last?.hasPrefix("30000 ") == true)
            let three = try s.mesh(["jobs", "--data-dir", d, "--state", "held", "--limit", "3", "--json"])
            func count(_ json: String) -> Int? { (try? JSONSerialization.jsonObject(with: Data(json.utf8))).flatMap { $0 as? [Any] }?.count }
            #expect(three.exitCode == 0 && count(three.stdout) == 3, "\(three)")
            let all = try s.mesh(["jobs", "--data-dir", d, "--all", "--json"], timeout: .seconds(120))
            #expect(all.exitCode == 0 && count(all.stdout) == 30000)
            let ping = try s.mesh(["ping", "--data-dir", d])
            #expect(ping.exitCode == 0, "\(ping)")
        }
    }

    @Test("an ended attempt's workspace is deleted once its end is reported (its log and results stay); --keep-workspace keeps it")
    func workspaces() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let d = try s.startMesh(1)[0].dataDir
            let script = "mkdir out && echo result > out/r && echo scratch > big && echo 'RESULTS: out'"
            let plain = try s.mesh(["submit", "--data-dir", d, "--no-code", "--wait", "--", "sh", "-c", script])
            let kept = try s.mesh(["submit", "--data-dir", d, "--no-code", "--keep-workspace", "--wait", "--", "sh", "-c", script])
            #expect(plain.exitCode == 0 && kept.exitCode == 0, "\(plain) \(kept)")
            let gone = s.waitFor(.seconds(20)) { !FileManager.default.fileExists(atPath: d + "/attempts/1.1/workspace") }
            #expect(gone != nil, "the workspace of job 1 is still there")
            #expect(FileManager.default.fileExists(atPath: d + "/attempts/1.1/log"))
            #expect(FileManager.default.fileExists(atPath: d + "/attempts/2.1/workspace/big"), "--keep-workspace kept it")
            let dest = s.dir.sub("r")
            let results = try s.mesh(["results", "1", dest, "--data-dir", d])
            #expect(results.exitCode == 0 && (try? String(contentsOfFile: dest + "/out/r", encoding: .utf8)) == "result\n", "\(results)")
        }
    }
}
