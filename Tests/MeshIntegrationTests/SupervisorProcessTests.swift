import Foundation
import MeshAgent
import MeshTestSupport
import Testing

/// `mesh supervise` as the agent starts it, on a hand-made attempt directory: it runs the command
/// only if it has not been told to stop and its lease has not run out (the agent may write the
/// stop file between spawning it and its start; found by the chaos harness).
@Suite("Supervisor: never starts a stopped or expired attempt")
struct SupervisorProcessTests {
    enum Setup { case runnable, stopped(String), expired }

    /// Runs one attempt whose command would create `ran`; the result file and whether it ran.
    func supervise(_ setup: Setup) throws -> (result: [String: Any], ran: Bool) {
        let tmp = try TemporaryDirectory("sup")
        defer { tmp.remove() }
        let dir = tmp.sub("1.1"), ran = tmp.sub("ran")
        try FileManager.default.createDirectory(atPath: dir + "/workspace", withIntermediateDirectories: true)
        let spec: [String: Any] = [
            "job": 1, "attempt": 1, "node": "n1", "command": ["sh", "-c", "touch \(ran)"], "env": [:], "workdir": "",
            "timeoutSeconds": 0, "results": [], "gpus": [], "logLimit": 1 << 20, "resultsLimit": 1 << 20, "killGrace": 1,
        ]
        try JSONSerialization.data(withJSONObject: spec).write(to: URL(fileURLWithPath: dir + "/spec.json"))
        var ts = timespec()
        clock_gettime(CLOCK_BOOTTIME, &ts)
        let now = Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
        let lease: Int64
        switch setup {
        case .expired: lease = now - 1_000_000_000
        default: lease = now + 60_000_000_000
        }
        try "\(lease)\n".write(toFile: dir + "/lease", atomically: true, encoding: .utf8)
        if case .stopped(let why) = setup { try "\(why)\n".write(toFile: dir + "/stop", atomically: true, encoding: .utf8) }
        let p = try ChildProcess.spawn(MeshBinary.path, ["supervise", dir], stdout: tmp.sub("out"), stderr: tmp.sub("out"))
        let end = p.wait(timeout: .seconds(30))
        #expect(end == .exited(0), "mesh supervise: \((try? String(contentsOfFile: tmp.sub("out"), encoding: .utf8)) ?? "")")
        let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/result.json"))
        let result = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return (result, FileManager.default.fileExists(atPath: ran))
    }

    @Test("a runnable attempt runs (the control)")
    func runs() throws {
        let (result, ran) = try supervise(.runnable)
        #expect(ran)
        #expect(result["kind"] as? String == "exited" && result["code"] as? Int == 0)
    }

    @Test("stopped as superseded before it started: never runs, lost")
    func superseded() throws {
        let (result, ran) = try supervise(.stopped("superseded"))
        #expect(!ran)
        #expect(result["kind"] as? String == "lost" && result["reason"] as? String == "superseded before it started")
    }

    @Test("cancelled before it started: never runs, cancelled")
    func cancelled() throws {
        let (result, ran) = try supervise(.stopped("cancelled"))
        #expect(!ran)
        #expect(result["kind"] as? String == "cancelled")
    }

    @Test("lease already run out: never runs, lost")
    func expired() throws {
        let (result, ran) = try supervise(.expired)
        #expect(!ran)
        #expect(result["kind"] as? String == "lost" && result["reason"] as? String == "no lease left to start under")
    }
}
