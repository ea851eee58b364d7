import Foundation
import MeshAgent
import MeshTestSupport
import Testing

/// `deploy/rollout` against a real sshd on 127.0.0.1 with three local users as three hosts
/// (`deploy/test-rollout` does the work and cleans up after itself; it needs root to add users, as
/// CI has, and openssh-server, which CI installs).
@Suite("Rollout over ssh")
struct DeployTests {
    static var available: Bool {
        getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/sshd")
            && FileManager.default.isExecutableFile(atPath: "/usr/sbin/useradd")
    }

    static var script: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("deploy/test-rollout").path
    }

    @Test("rollout joins three hosts and reports an unreachable one; a re-run changes nothing; changed options are reported, and applied with --restart while a job runs on; a failed setup stays failed; --only and --skip; a bad hosts file is refused; setup: lines run; the token is on no command line", .enabled(if: available))
    func rollout() async throws {
        try await onProcessThread { try Self.rolloutBody() }
    }

    static func rolloutBody() throws {
        let dir = try TemporaryDirectory("rollout")
        defer { dir.remove() }
        let out = dir.sub("out.txt")
        let p = try ChildProcess.spawn(Self.script, [MeshBinary.path], stdout: out, stderr: out)
        // On a timeout the whole process group (the script, its rollouts, ssh, sshd): the script's
        // clean-up runs once its foreground command has ended, and removes the users and files.
        let status = p.wait(timeout: .seconds(900)) ?? {
            p.signalGroup(SIGTERM)
            if let t = p.wait(timeout: .seconds(60)) { return t }
            p.signalGroup(SIGKILL)
            return p.wait()!
        }()
        let output = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        print(output)
        // The failures and the end of the output, so that a short excerpt of a CI log shows why.
        let lines = output.split(separator: "\n", omittingEmptySubsequences: false)
        let failed = lines.filter { $0.hasPrefix("not ok") }.joined(separator: "\n")
        let tail = lines.suffix(25).joined(separator: "\n")
        #expect(status == .exited(0), "test-rollout: \(failed)\n--- its last lines:\n\(tail)")
        #expect(failed.isEmpty, "test-rollout: \(failed)")
        #expect(!output.contains("SKIP setup check"), "the binary knows --setup")
    }
}
