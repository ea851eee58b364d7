import Foundation
import MeshAgent
import MeshTestSupport
import Testing

/// Real `mesh` processes on loopback: the binary as users run it.
@Suite("mesh processes")
struct MeshProcessTests {
    @Test("two agents answer pings from the CLI and ping each other")
    func twoAgents() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let a = try s.dataDirectory("a")
            let b = try s.dataDirectory("b", secret: try s.secret(of: a))
            let alpha = try s.startAgent(a, name: "alpha")
            let beta = try s.startAgent(b, name: "beta")

            let local = try s.mesh(["ping", "--data-dir", a])
            #expect(local.exitCode == 0, "\(local)")
            #expect(local.stdout.contains("pong from alpha"))

            let direct = try s.mesh(["ping", "--data-dir", a, "--to", beta.address, "-c", "3", "--interval", "10ms"])
            #expect(direct.exitCode == 0, "\(direct)")
            #expect(direct.stdout.components(separatedBy: "pong from beta").count == 4)
            #expect(direct.stdout.contains("3 sent, 3 answered, 0 lost"))

            // Agent to agent, both ways.
            let ab = try s.mesh(["ping", "--data-dir", a, "--from", "local", "--to", beta.address])
            #expect(ab.exitCode == 0, "\(ab)")
            #expect(ab.stdout.contains("pong from beta") && ab.stdout.contains("(from alpha)"))
            let ba = try s.mesh(["ping", "--data-dir", a, "--from", beta.address, "--to", alpha.address, "--json"])
            #expect(ba.exitCode == 0, "\(ba)")
            let json = try JSONSerialization.jsonObject(with: Data(ba.stdout.utf8)) as? [String: Any]
            let reply = (json?["replies"] as? [[String: Any]])?.first
            #expect(reply?["node"] as? String == "alpha")
            #expect(reply?["via"] as? String == "beta")
        }
    }

    @Test("another mesh's key: exit 69 in bounded time, the agent logs it and keeps answering")
    func wrongKey() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let a = try s.dataDirectory("a")
            let other = try s.dataDirectory("other")
            let alpha = try s.startAgent(a, name: "alpha")

            let r = try s.mesh(["ping", "--data-dir", other, "--to", alpha.address, "--timeout", "20s"])
            #expect(r.exitCode == 69, "\(r)")
            #expect(r.stderr.contains("another mesh"))
            #expect(r.elapsed < .seconds(10))
            let deadline = ContinuousClock.now + .seconds(5)
            while !alpha.logText.contains("failed the security handshake"), ContinuousClock.now < deadline { usleep(20_000) }
            #expect(alpha.logText.contains("failed the security handshake"))

            let ok = try s.mesh(["ping", "--data-dir", a, "--to", alpha.address])
            #expect(ok.exitCode == 0, "\(ok)")
        }
    }

    @Test("nothing listening: exit 69 and a message that says so")
    func unreachable() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let a = try s.dataDirectory("a")
            let closed = try ReservedPort()
            let r = try s.mesh(["ping", "--data-dir", a, "--to", closed.address, "--timeout", "3s"])
            #expect(r.exitCode == 69, "\(r)")
            #expect(r.stderr.contains("connection refused"))
            let local = try s.mesh(["ping", "--data-dir", a, "--timeout", "300ms"])
            #expect(local.exitCode == 69, "\(local)")
            #expect(local.stderr.contains("mesh agent"))
        }
    }

    @Test("SIGTERM and SIGINT stop an agent cleanly: exit 0, files removed, no process left", arguments: [SIGTERM, SIGINT])
    func cleanShutdown(signal: Int32) async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let a = try s.dataDirectory("a")
            let alpha = try s.startAgent(a, name: "alpha")
            let pid = alpha.process.pid
            let started = ContinuousClock.now
            alpha.process.signal(signal)
            let t = alpha.process.wait(timeout: .seconds(10))
            #expect(t == .exited(0), "\(alpha.logText)")
            #expect(ContinuousClock.now - started < .seconds(3))
            #expect(!FileManager.default.fileExists(atPath: a + "/agent.endpoint"))
            #expect(!FileManager.default.fileExists(atPath: a + "/agent.sock"))
            #expect(!FileManager.default.fileExists(atPath: "/proc/\(pid)"))
            #expect(alpha.logText.contains("shutting down"))
            // The directory is free again: a new agent starts on it.
            let again = try s.startAgent(a, name: "alpha")
            #expect(try s.mesh(["ping", "--data-dir", a]).exitCode == 0)
            again.process.terminate()
        }
    }

    @Test("start-up errors are clear and exit 1: port in use, directory in use, no key, unusable directory")
    func startupErrors() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let a = try s.dataDirectory("a")
            let b = try s.dataDirectory("b", secret: try s.secret(of: a))
            let alpha = try s.startAgent(a, name: "alpha")

            let port = try s.mesh(["agent", "--data-dir", b, "--listen", alpha.address])
            #expect(port.exitCode == 1, "\(port)")
            #expect(port.stderr.contains("already in use"))

            let twice = try s.mesh(["agent", "--data-dir", a, "--listen", "127.0.0.1:0"])
            #expect(twice.exitCode == 1, "\(twice)")
            #expect(twice.stderr.contains("already running") && twice.stderr.contains("pid \(alpha.process.pid)"))

            let noKey = try s.mesh(["agent", "--data-dir", s.dir.sub("empty"), "--listen", "127.0.0.1:0"])
            #expect(noKey.exitCode == 1, "\(noKey)")
            #expect(noKey.stderr.contains("mesh init"))

            _ = FileManager.default.createFile(atPath: s.dir.sub("plainfile"), contents: Data())
            let badDir = try s.mesh(["init", "--data-dir", s.dir.sub("plainfile/sub")])
            #expect(badDir.exitCode == 1, "\(badDir)")
            #expect(badDir.stderr.contains("cannot use data directory"))

            let initTwice = try s.mesh(["init", "--data-dir", a, "--listen", "127.0.0.1:0"])
            #expect(initTwice.exitCode == 1)
            #expect(initTwice.stderr.contains("already holds"))

            // None of that disturbed the running agent.
            #expect(try s.mesh(["ping", "--data-dir", a]).exitCode == 0)
        }
    }

    @Test("usage errors exit 64; --version, --help and completions work")
    func usage() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            #expect(try s.mesh(["frobnicate"]).exitCode == 64)
            #expect(try s.mesh(["ping", "--timeout", "soon"]).exitCode == 64)
            #expect(try s.mesh(["ping", "--to", "host:notaport"]).exitCode == 64)
            #expect(try s.mesh(["agent", "--listen", "[::1]:7770"]).exitCode == 64)
            let v = try s.mesh(["--version"])
            #expect(v.exitCode == 0 && v.stdout.contains("mesh 0.") && v.stdout.contains("protocol"))
            let h = try s.mesh(["--help"])
            #expect(h.exitCode == 0 && h.stdout.contains("ping") && h.stdout.contains("agent") && h.stdout.contains("init"))
            let c = try s.mesh(["completions", "bash"])
            #expect(c.exitCode == 0 && c.stdout.contains("complete"))
        }
    }
}
