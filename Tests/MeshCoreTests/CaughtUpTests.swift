import MeshCore
import Testing

@Suite("Raft: a follower knows when its state is a stale prefix")
struct CaughtUpTests {
    @Test("a follower back from isolation is not caught up until it has applied what the leader said is committed")
    func staleprefix() throws {
        var s = RaftStory(voters: ["a", "b", "c"])
        s.fire("a")
        s.deliverAll()
        s.run(.milliseconds(300))
        #expect(s.node("a").role == .leader)
        #expect(s.node("c").caughtUp)
        // c misses 30 writes that a and b commit.
        s.isolate("c")
        for k in 0..<30 { _ = s.propose("a", "k\(k)", client: 1, sequence: UInt64(k + 1)) }
        s.run(.milliseconds(300))
        let committed = s.node("a").commitIndex
        #expect(s.node("b").appliedIndex == committed)
        #expect(s.node("c").appliedIndex < committed)
        // Back: the first append that reaches c names the leader's commit index, beyond what c has.
        s.heal()
        var sawLagging = false
        for _ in 0..<200 {
            s.tick(.milliseconds(10))
            while !s.queue.isEmpty {
                let p = s.queue.removeFirst()
                s.deliver(p)
                let c = s.node("c")
                if c.knownCommit == committed && c.appliedIndex < committed {
                    sawLagging = true
                    #expect(!c.caughtUp, "c acts on index \(c.appliedIndex) while \(committed) is committed")
                }
                if c.caughtUp { #expect(c.appliedIndex >= c.knownCommit) }
            }
        }
        #expect(sawLagging)
        #expect(s.node("c").caughtUp && s.node("c").appliedIndex >= committed)
    }
}
