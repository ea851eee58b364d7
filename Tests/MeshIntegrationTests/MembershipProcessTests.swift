import Foundation
import MeshAgent
import MeshTestSupport
import MeshTransport
import MeshWire
import Testing

/// Membership between real `mesh` processes on loopback.
@Suite("mesh membership, real processes")
struct MembershipProcessTests {
    @Test("five agents all see five alive; kill -9 one and the rest mark it dead; restarted it comes back with a higher incarnation; a leave shows 'left'")
    func fiveAgents() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let agents = try s.startMesh(5)
            let names: Set<String> = ["n0", "n1", "n2", "n3", "n4"]
            let converged = s.waitFor(.seconds(20)) { agents.allSatisfy { s.status($0.dataDir)?.aliveNames == names } }
            #expect(converged != nil, "not all five see five alive")

            // kill -9: the other four mark it dead.
            let victim = agents[3]
            let before = s.status(agents[0].dataDir)?.member("n3")?.record.incarnation ?? 0
            victim.process.signal(SIGKILL)
            _ = victim.process.wait(timeout: .seconds(5))
            let others = agents.filter { $0.dataDir != victim.dataDir }
            let detected = s.waitFor(.seconds(30)) { others.allSatisfy { s.status($0.dataDir)?.state(of: "n3") == "dead" } }
            #expect(detected != nil, "n3 not marked dead by all four within 30 s")
            if let detected { print("membership, real processes: kill -9 → dead on all 4 others in \(detected)") }

            // Restart: same data directory, same node id, higher incarnation.
            let back = try s.startAgent(victim.dataDir, name: "n3", join: [agents[0].address])
            let rejoined = s.waitFor(.seconds(30)) {
                others.allSatisfy { o in
                    guard let m = s.status(o.dataDir)?.member("n3") else { return false }
                    return m.record.state == .alive && m.record.incarnation > before
                }
            }
            #expect(rejoined != nil, "restarted n3 not alive with a higher incarnation everywhere")

            // A graceful leave.
            let leave = try s.mesh(["leave", "--data-dir", agents[1].dataDir])
            #expect(leave.exitCode == 0, "\(leave)")
            #expect(agents[1].process.wait(timeout: .seconds(10)) == .exited(0))
            let rest = [agents[0], agents[2], back, agents[4]]
            #expect(s.waitFor(.seconds(10)) { rest.allSatisfy { s.status($0.dataDir)?.state(of: "n1") == "left" } } != nil)
        }
    }

    @Test("mesh init, mesh join, mesh status, mesh token, mesh leave: the commands a user types")
    func commands() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let a = s.dir.sub("a"), b = s.dir.sub("b"), c = s.dir.sub("c")
            let initResult = try s.mesh(["init", "--data-dir", a, "--name", "alpha", "--listen", "127.0.0.1:0"])
            #expect(initResult.exitCode == 0, "\(initResult)")
            let token = try #require(initResult.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init).first { $0.hasPrefix("mesh1-") })
            #expect(initResult.stdout.contains("secret"))

            let jb = try s.mesh(["join", token, "--data-dir", b, "--name", "beta", "--listen", "127.0.0.1:0", "--class", "gpu", "--label", "zone=lab1", "--gpus", "2"])
            #expect(jb.exitCode == 0, "\(jb)")
            #expect(jb.stdout.contains("Joined mesh") && jb.stdout.contains("beta"))
            let jc = try s.mesh(["join", token, "--data-dir", c, "--name", "gamma", "--listen", "127.0.0.1:0", "--slots", "4"])
            #expect(jc.exitCode == 0, "\(jc)")

            // Every member, from any node, with its metadata.
            #expect(s.waitFor(.seconds(30)) { [a, b, c].allSatisfy { s.status($0)?.aliveNames == ["alpha", "beta", "gamma"] } } != nil)
            let json = try s.mesh(["status", "--data-dir", c, "--json"])
            #expect(json.exitCode == 0, "\(json)")
            let doc = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
            let members = (doc?["members"] as? [[String: Any]]) ?? []
            let beta = members.first { $0["name"] as? String == "beta" }
            #expect(members.count == 3)
            #expect(beta?["nodeClass"] as? String == "gpu")
            #expect((beta?["labels"] as? [String: String])?["zone"] == "lab1")
            #expect(beta?["gpus"] as? Int == 2)
            #expect(members.first { $0["name"] as? String == "gamma" }?["slots"] as? Int == 4)
            let table = try s.mesh(["status", "--data-dir", a])
            #expect(table.stdout.contains("NAME") && table.stdout.contains("LAST HEARD") && table.stdout.contains("3 alive"))

            // Joining again changes nothing; a token printed by any member works.
            let again = try s.mesh(["join", token, "--data-dir", b, "--name", "beta", "--listen", "127.0.0.1:0"])
            #expect(again.exitCode == 0 && again.stdout.contains("Already a member"), "\(again)")
            let printed = try s.mesh(["token", "--data-dir", b])
            #expect(printed.exitCode == 0)
            let parsed = try JoinToken(text: printed.stdout)
            #expect(parsed.secret == (try JoinToken(text: token)).secret)
            #expect(parsed.seeds.count == 3)

            // Leave.
            let leave = try s.mesh(["leave", "--data-dir", b])
            #expect(leave.exitCode == 0, "\(leave)")
            #expect(s.waitFor(.seconds(10)) { s.status(a)?.state(of: "beta") == "left" } != nil)
            #expect(AgentLauncher.runningAgent(DataDirectory(path: b)) == nil)
        }
    }

    @Test("bad joins: malformed token, another mesh's key, a name in use, a seed that is down, another protocol version — each a clear message, non-zero exit, no agent left")
    func badJoins() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let a = try s.dataDirectory("a")
            let alpha = try s.startAgent(a, name: "alpha")
            let seed = try AgentAddress(parsing: alpha.address)

            let malformed = try s.mesh(["join", "mesh1-not-a-token", "--data-dir", s.dir.sub("x1")])
            #expect(malformed.exitCode == 64, "\(malformed)")
            #expect(malformed.stderr.contains("not a valid join token"))
            let key = try s.mesh(["join", try s.secret(of: a).text, "--data-dir", s.dir.sub("x1")])
            #expect(key.exitCode == 64 && key.stderr.contains("cluster key, not a join token"), "\(key)")
            // No token at all: not in the arguments, not on standard input (/dev/null), not in $MESH_TOKEN.
            let none = try s.mesh(["join", "--data-dir", s.dir.sub("x1")], environment: ["MESH_TOKEN": ""])
            #expect(none.exitCode == 64 && none.stderr.contains("give the join token"), "\(none)")
            let emptyStdin = try s.mesh(["join", "-", "--data-dir", s.dir.sub("x1")])
            #expect(emptyStdin.exitCode == 64 && emptyStdin.stderr.contains("no token on standard input"), "\(emptyStdin)")
            let badEnv = try s.mesh(["join", "--data-dir", s.dir.sub("x1")], environment: ["MESH_TOKEN": "mesh1-not-a-token"])
            #expect(badEnv.exitCode == 64 && badEnv.stderr.contains("not a valid join token"), "\(badEnv)")

            let foreign = JoinToken(secret: ClusterSecret.generate(), seeds: [seed]).text
            let wrongKey = try s.mesh(["join", foreign, "--data-dir", s.dir.sub("x2"), "--listen", "127.0.0.1:0"])
            #expect(wrongKey.exitCode == 69, "\(wrongKey)")
            #expect(wrongKey.stderr.contains("another mesh"))
            #expect(wrongKey.elapsed < .seconds(10))

            let token = JoinToken(secret: try s.secret(of: a), seeds: [seed]).text
            let taken = try s.mesh(["join", token, "--data-dir", s.dir.sub("x3"), "--name", "alpha", "--listen", "127.0.0.1:0"])
            #expect(taken.exitCode == 1, "\(taken)")
            #expect(taken.stderr.contains("'alpha'") && taken.stderr.contains("--name"))
            #expect(AgentLauncher.runningAgent(DataDirectory(path: s.dir.sub("x3"))) == nil)

            let closed = try ReservedPort()
            let down = JoinToken(secret: try s.secret(of: a), seeds: [try AgentAddress(parsing: closed.address)]).text
            let seedDown = try s.mesh(["join", down, "--data-dir", s.dir.sub("x4"), "--listen", "127.0.0.1:0"])
            #expect(seedDown.exitCode == 69, "\(seedDown)")
            #expect(seedDown.stderr.contains("connection refused"))

            let newer = try s.mesh(["join", token, "--data-dir", s.dir.sub("x5"), "--name", "newer", "--listen", "127.0.0.1:0"],
                                   environment: ["MESH_TEST_PROTOCOL_VERSION": "\(Wire.protocolVersion + 1)"])
            #expect(newer.exitCode == 69, "\(newer)")
            #expect(newer.stderr.contains("protocol version \(Wire.protocolVersion + 1)"))
            let older = try s.mesh(["join", token, "--data-dir", s.dir.sub("x6"), "--name", "older", "--listen", "127.0.0.1:0"],
                                   environment: ["MESH_TEST_PROTOCOL_VERSION": "\(Wire.protocolVersion - 1)"])
            #expect(older.exitCode == 69, "\(older)")
            #expect(older.stderr.contains("protocol version \(Wire.protocolVersion - 1)"), "a node of the previous release is refused: \(older)")

            // None of it disturbed the mesh.
            #expect(s.status(a)?.aliveNames == ["alpha"])
            let noAgent = try s.mesh(["status", "--data-dir", try s.dataDirectory("idle", secret: try s.secret(of: a))])
            #expect(noAgent.exitCode == 69, "\(noAgent)")
            #expect(noAgent.stderr.contains("mesh agent"))
        }
    }
}
