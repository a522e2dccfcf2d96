import FleetProtocol
import Inventory
import Testing

@testable import Publishing

/// The rollout's rule without a server: promotion on confirmed hosts and a passed soak, halting on failures,
/// rollbacks and silence beyond `max_failures`, accepted failures, and rings nobody in the rollout belongs to.
@Suite("rollout policy")
struct RolloutPolicyTests {
    static func ring(_ name: String, _ hosts: [String], soak: Int = 0, maxFailures: Int = 0)
        -> RolloutConfiguration.Ring
    {
        .init(
            name: name, patterns: hosts, hosts: hosts.compactMap { try? HostName($0) }, soakSeconds: soak,
            maxFailures: maxFailures)
    }

    static let rings = [
        ring("canary", ["c1"], soak: 600), ring("wave", ["w1", "w2", "w3"], maxFailures: 1), ring("rest", ["r1"]),
    ]

    static func state(ring: Int, status: RolloutStore.Status = .running, confirmedAt: Int64? = nil)
        -> RolloutStore.State
    {
        .init(
            run: "r", startedAt: "2026-12-05T00:00:00Z", ring: ring, status: status, confirmedAt: confirmedAt,
            haltedHost: nil, reason: nil, changedAt: "2026-12-05T00:00:00Z")
    }

    /// Every host of the rings in the rollout; those in rings up to `delivered` have their manifests.
    static func hosts(delivered ring: Int, waived: Set<String> = []) -> [RolloutStore.Host] {
        rings.enumerated().flatMap { index, ringConfiguration in
            ringConfiguration.hosts.map { host in
                RolloutStore.Host(
                    host: host.value, generation: 7, previousGeneration: 6, manifest: [], delivered: index <= ring,
                    waived: waived.contains(host.value))
            }
        }
    }

    func decide(
        _ state: RolloutStore.State?, _ health: [String: RolloutHealth], now: Int64 = 10_000,
        waived: Set<String> = []
    ) -> RolloutDecision {
        RolloutPolicy.decide(
            rings: Self.rings, state: state, hosts: Self.hosts(delivered: state?.ring ?? 0, waived: waived),
            health: health, now: now)
    }

    @Test func aRingWaitsForEachOfItsHostsToConfirm() {
        guard case .waitForHosts(let why) = decide(Self.state(ring: 0), ["c1": .waiting]) else {
            Issue.record("expected to wait")
            return
        }
        #expect(why.contains("c1 (generation 7)") && why.contains("ring canary"), "\(why)")
    }

    @Test func confirmedStartsTheSoakWhichPromotesOnlyWhenItHasPassed() {
        #expect(decide(Self.state(ring: 0), ["c1": .confirmed]) == .startSoak)
        guard case .soak(let why) = decide(Self.state(ring: 0, confirmedAt: 10_000 - 599), ["c1": .confirmed]) else {
            Issue.record("expected to soak")
            return
        }
        #expect(why.contains("1 s left"), "\(why)")
        #expect(decide(Self.state(ring: 0, confirmedAt: 10_000 - 600), ["c1": .confirmed]) == .promote(to: 1))
    }

    @Test func aRingWithoutSoakPromotesAsSoonAsItsHostsConfirmAndTheLastCompletes() {
        let wave: [String: RolloutHealth] = ["c1": .confirmed, "w1": .confirmed, "w2": .confirmed, "w3": .confirmed]
        #expect(decide(Self.state(ring: 1), wave) == .promote(to: 2))
        #expect(decide(Self.state(ring: 2), wave.merging(["r1": .confirmed]) { $1 }) == .complete)
    }

    @Test func failuresUpToMaxFailuresAreToleratedAndOneMoreHalts() {
        var health: [String: RolloutHealth] = [
            "c1": .confirmed, "w1": .failed("nix build exited 1"), "w2": .confirmed, "w3": .confirmed,
        ]
        #expect(decide(Self.state(ring: 1), health) == .promote(to: 2), "one failure is within max_failures = 1")
        health["w3"] = .rolledBack("cannot reach the server")
        guard case .halt(let host, let reason) = decide(Self.state(ring: 1), health) else {
            Issue.record("expected a halt")
            return
        }
        #expect(host == "w1" && reason.contains("ring wave: 2 of its hosts") && reason.contains("max_failures = 1"))
    }

    @Test(arguments: [RolloutHealth.failed("x"), .rolledBack("y"), .silent("nothing received for 1 h")])
    func theCanaryFailingRollingBackOrGoingSilentHalts(health: RolloutHealth) {
        guard case .halt(let host, let reason) = decide(Self.state(ring: 0), ["c1": health]) else {
            Issue.record("expected a halt")
            return
        }
        #expect(host == "c1" && reason.contains(health.problem ?? "?"), "\(reason)")
    }

    @Test func aFailureInAnEarlierRingStillHalts() {
        let decision = decide(
            Self.state(ring: 1), ["c1": .rolledBack("late"), "w1": .confirmed, "w2": .confirmed, "w3": .confirmed])
        #expect(decision == .halt(host: "c1", reason: decision.haltReason ?? ""))
        #expect(decision.haltReason?.contains("ring canary") == true)
    }

    @Test func acceptedFailuresNeitherHaltNorHoldBack() {
        #expect(decide(Self.state(ring: 0), ["c1": .failed("x")], waived: ["c1"]) == .promote(to: 1))
    }

    @Test func hostsWithoutTheirManifestYetAreWaitedFor() {
        var hosts = Self.hosts(delivered: 1)
        hosts[1].delivered = false
        let decision = RolloutPolicy.decide(
            rings: Self.rings, state: Self.state(ring: 1),
            hosts: hosts, health: ["c1": .confirmed, "w1": .confirmed, "w2": .confirmed, "w3": .confirmed], now: 0)
        guard case .waitForHosts = decision else {
            Issue.record("expected to wait, got \(decision)")
            return
        }
    }

    @Test func aRingWithNoHostInTheRolloutPassesAtOnce() {
        let hosts = Self.hosts(delivered: 2).filter { $0.host == "c1" }
        #expect(
            RolloutPolicy.decide(
                rings: Self.rings, state: Self.state(ring: 1), hosts: hosts, health: ["c1": .confirmed], now: 0)
                == .promote(to: 2))
    }

    @Test(arguments: [RolloutStore.Status.halted, .complete, .aborted, .aborting])
    func onlyARunningRolloutMoves(status: RolloutStore.Status) {
        #expect(decide(Self.state(ring: 0, status: status), ["c1": .confirmed]) == .idle)
        #expect(decide(nil, ["c1": .confirmed]) == .idle)
    }
}

extension RolloutDecision {
    var haltReason: String? {
        if case .halt(_, let reason) = self { return reason }
        return nil
    }
}
