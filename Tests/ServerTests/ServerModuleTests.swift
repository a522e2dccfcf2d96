import CommandRunner
import FleetFiles
import FleetTestSupport
import Foundation
import ServerSetup
import Testing

/// nixos/server.nix, evaluated offline with a stand-in for nixpkgs' `lib` and `pkgs` (nothing here can fetch
/// nixpkgs): the sshd configuration it adds, its fleet-setup check that must pass on a first boot without
/// host keys (run for real against a temporary configuration), and its fleet-review units.
@Suite("NixOS server module")
struct ServerModuleTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static let checkScript = repository + "/nixos/server-sshd-check.sh"

    /// The module applied to a small configuration. `lib` and `pkgs` are stand-ins with the few functions it
    /// uses: options are their declarations, `mkIf` always applies, `writeShellScript` gives `{ name; text; }`
    /// whose path is `/stub/<name>`.
    static let moduleExpression = """
        let
          lib = {
            mkOption = o: o; mkEnableOption = d: { default = false; }; mkIf = c: x: x; mkAfter = x: x;
            optional = c: x: if c then [ x ] else [ ]; literalExpression = x: x;
            escapeShellArg = s: "'" + s + "'";
            makeBinPath = ps: builtins.concatStringsSep ":" (map (p: "${p}/bin") ps);
            types = {
              strMatching = r: { pattern = r; }; bool = "bool"; str = "str"; package = "package"; path = "path";
              either = a: b: "either"; listOf = t: "listOf"; nullOr = t: "nullOr"; enum = values: { inherit values; };
            };
          };
          stub = name: "/stub/" + name;
          pkgs = {
            coreutils = stub "coreutils"; diffutils = stub "diffutils"; shadow = stub "shadow"; git = stub "git";
            writeShellScript = name: text: { inherit name text; outPath = stub name; };
          };
          config = {
            services.openssh = { package = stub "openssh"; sftpServerExecutable = "internal-sftp"; };
            systemd.package = stub "systemd";
            nix.package = stub "nix";
            services.fleet-server = {
              enable = true; package = stub "fleet"; repository = "/var/lib/fleet/repo"; inventory = null;
              hosts = [ "svm-web" ]; userPrefix = "fleet-"; chrootRoot = "/srv/fleet"; stateDir = "/var/lib/fleet";
              signingKeyName = "fleet-1"; publish = { onCommit = true; startAt = [ ]; };
              review = { interval = "30s"; metricsFile = "/var/lib/node-exporter/fleet.prom"; };
              autoUpdate = { enable = true; startAt = "weekly"; policy = "per-host"; inputs = [ "nixpkgs" "home-manager" ]; };
            };
          };
          module = import \(repository)/nixos/server.nix { inherit config lib pkgs; };
        in {
          extraConfig = module.config.services.openssh.extraConfig;
          setup = module.config.systemd.services.fleet-setup.serviceConfig.ExecStart.text;
          review = module.config.systemd.services.fleet-review;
          timer = module.config.systemd.timers.fleet-review;
          refresh = module.config.systemd.services.fleet-refresh;
          refreshTimer = module.config.systemd.timers.fleet-refresh;
          update = module.config.systemd.services.fleet-update;
          updateOptions = {
            startAt = module.options.services.fleet-server.autoUpdate.startAt.default;
            policy = module.options.services.fleet-server.autoUpdate.policy.default;
          };
          reviewOptions = {
            interval = module.options.services.fleet-server.review.interval.default;
            pattern = module.options.services.fleet-server.review.interval.type.pattern;
          };
        }
        """

    struct Module: Decodable {
        struct Service: Decodable {
            let after: [String]
            let environment: [String: String]
            let serviceConfig: [String: String]
        }

        struct Timer: Decodable {
            let wantedBy: [String]
            let timerConfig: [String: String]
        }

        let extraConfig: String
        let setup: String
        let review: Service
        let timer: Timer
        let refresh: Service
        let refreshTimer: Timer
        let reviewOptions: [String: String]
        let update: UpdateService
        let updateOptions: [String: String]

        struct UpdateService: Decodable {
            let environment: [String: String]
            let startAt: String
            let serviceConfig: [String: String]
        }
    }

    static func evaluate() async throws -> Module {
        let output = try await Command.run(
            "nix-instantiate", ["--eval", "--strict", "--json", "--expr", moduleExpression],
            environment: ["NIX_CONFIG": "experimental-features = nix-command flakes\nbuild-users-group ="])
        guard output.exitCode == 0 else { throw TestSupportError("nix-instantiate: \(output.standardError)") }
        return try JSONDecoder().decode(Module.self, from: Data(output.standardOutput.utf8))
    }

    /// `text` after the shell here-document nixpkgs' openssh module puts extraConfig through at build time
    /// (`cat … - >$out <<EOL`, unquoted, so backticks run and dollar signs expand).
    static func throughHereDocument(_ text: String) async throws -> String {
        let output = try await Command.run("/bin/bash", ["-c", "cat - <<EOL\n\(text)\nEOL"])
        guard output.exitCode == 0 else { throw TestSupportError("bash: \(output.standardError)") }
        return String(output.standardOutput.dropLast())
    }

    @Test func theSSHDConfigurationTheModuleWritesHasNoShellExpansions() async throws {
        let module = try await Self.evaluate()
        #expect(module.extraConfig.contains("Match all\nInclude /etc/fleet/sshd-match.conf\n"), "\(module.extraConfig)")
        for line in module.extraConfig.split(separator: "\n") {
            #expect(!line.contains("$") && !line.contains("`") && !line.contains("\\"), "\(line)")
        }
        #expect(try await Self.throughHereDocument(module.extraConfig) == module.extraConfig)

        // The Match blocks fleet-setup writes, and the dedicated sshd's configuration, have none either, even
        // from a repository whose path has them.
        let fixture = try FleetFixture(hosts: ["svm-a"])
        defer { fixture.remove() }
        for arguments in [["sshd-config", "--match-only"], ["sshd-config", "--port", "2222"]] {
            let output = try await fixture.fleet(arguments)
            #expect(output.exitCode == 0, "\(output.standardError)")
            let comments = output.standardOutput.split(separator: "\n").filter { $0.hasPrefix("#") }
            #expect(!comments.isEmpty)
            for line in comments { #expect(!line.contains("$") && !line.contains("`"), "\(arguments): \(line)") }
            #expect(try await Self.throughHereDocument(output.standardOutput) == output.standardOutput)
        }
        let hostile = fixture.directory.path("repo-$(reboot)-`id`\nHostKey x")
        #expect(rename(fixture.repository, hostile) == 0)
        let output = try await Command.run(
            FleetFixture.executable("fleet"), ["sshd-config", "--match-only", "--repo", hostile],
            environment: ["FLEET_CHROOT_ROOT": fixture.chrootRoot, "FLEET_STATE_DIR": fixture.stateDirectory])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(output.standardOutput.hasPrefix("# Generated by fleet sshd-config from "), "\(output.standardOutput)")
        #expect(!output.standardOutput.contains("$") && !output.standardOutput.contains("`"))
        #expect(!output.standardOutput.contains("\nHostKey"), "the path's newline started a directive")
        #expect(rename(hostile, fixture.repository) == 0)
    }

    /// On a first boot /etc/ssh has no host keys (sshd makes them when it starts, after fleet-setup). The check
    /// fleet-setup runs passes anyway, and still refuses a configuration sshd would refuse.
    @Test func theSetupCheckPassesWithoutHostKeys() async throws {
        let module = try await Self.evaluate()
        #expect(
            module.setup.contains("if ! /stub/fleet-sshd-check /etc/ssh/sshd_config; then"),
            "fleet-setup runs the check script:\n\(module.setup)")
        #expect(!module.setup.contains("sshd -t -f"), "no other sshd -t in the setup script")

        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try directory.makeDirectory("tmp", mode: 0o700)
        let fixture = try FleetFixture(hosts: ["svm-b"])
        defer { fixture.remove() }
        let match = try await fixture.fleet(["sshd-config", "--match-only"])
        #expect(match.exitCode == 0, "\(match.standardError)")
        try directory.writeFile("sshd-match.conf", text: match.standardOutput)
        // What NixOS writes before the module's lines (the keys it would make at sshd's start), then the module's.
        let configuration =
            "HostKey \(directory.path("ssh_host_rsa_key"))\nHostKey \(directory.path("ssh_host_ed25519_key"))\n"
            + "Subsystem sftp internal-sftp\n"
            + module.extraConfig.replacingOccurrences(
                of: "/etc/fleet/sshd-match.conf", with: directory.path("sshd-match.conf"))
        try directory.writeFile("sshd_config", text: configuration)

        let environment = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TMPDIR": directory.path("tmp")]
        let plain = try await Command.run("/usr/sbin/sshd", ["-t", "-f", directory.path("sshd_config")])
        #expect(plain.exitCode != 0 && plain.standardError.contains("no hostkeys available"), "the first-boot failure")
        let checked = try await Command.run(
            "/bin/bash", [Self.checkScript, directory.path("sshd_config")], environment: environment)
        #expect(checked.exitCode == 0, "\(checked.standardError)")
        #expect(try FileStatus.of(directory.path("ssh_host_ed25519_key")) == nil, "the check makes no real key")
        #expect(try FileIO.listDirectory(directory.path("tmp")).isEmpty, "the throwaway key is removed")

        // A configuration sshd refuses is still refused.
        try directory.writeFile("sshd-match.conf", text: match.standardOutput + "Frobnicate yes\n")
        let refused = try await Command.run(
            "/bin/bash", [Self.checkScript, directory.path("sshd_config")], environment: environment)
        #expect(refused.exitCode != 0 && refused.standardError.contains("Frobnicate"), "\(refused.standardError)")
        #expect(try FileIO.listDirectory(directory.path("tmp")).isEmpty)
    }

    @Test func fleetReviewRunsOnATimer() async throws {
        let module = try await Self.evaluate()
        #expect(
            module.review.serviceConfig["ExecStart"]
                == "/stub/fleet/bin/fleet review --repo '/var/lib/fleet/repo' --metrics-file "
                + "/var/lib/node-exporter/fleet.prom")
        #expect(module.review.serviceConfig["Type"] == "oneshot")
        #expect(module.review.environment == ["FLEET_CHROOT_ROOT": "/srv/fleet", "FLEET_STATE_DIR": "/var/lib/fleet"])
        #expect(module.review.after == ["fleet-setup.service"])
        #expect(module.timer.wantedBy == ["timers.target"])
        #expect(module.timer.timerConfig["OnUnitActiveSec"] == "30s")
        #expect(module.timer.timerConfig["Unit"] == "fleet-review.service")
        #expect(module.reviewOptions["interval"] == "1min")
        // Freeze protection: the same refresh as `fleet install-units` writes (ServerUnits.refreshEvery).
        #expect(
            module.refresh.serviceConfig["ExecStart"]
                == "/stub/fleet/bin/fleet publish --repo '/var/lib/fleet/repo' --refresh")
        #expect(module.refreshTimer.wantedBy == ["timers.target"])
        #expect(module.refreshTimer.timerConfig["OnUnitActiveSec"] == ServerUnits.refreshEvery)
        #expect(module.refreshTimer.timerConfig["Unit"] == "fleet-refresh.service")
        // The interval pattern is one the Swift side accepts too (the same units on both kinds of server).
        #expect(module.reviewOptions["pattern"] == "[1-9][0-9]*(s|min|h)")
    }

    @Test func autoUpdateRunsACommittingFleetUpdateOnItsTimer() async throws {
        let module = try await Self.evaluate()
        #expect(
            module.update.serviceConfig["ExecStart"]
                == "/stub/fleet/bin/fleet update --repo '/var/lib/fleet/repo' --commit --policy per-host --input nixpkgs "
                + "--input home-manager")
        #expect(module.update.serviceConfig["Type"] == "oneshot")
        #expect(module.update.startAt == "weekly")
        #expect(module.update.environment["FLEET_STATE_DIR"] == "/var/lib/fleet")
        #expect(module.update.environment["GIT_CONFIG_VALUE_0"] == "/var/lib/fleet/repo")
        #expect(module.updateOptions["startAt"] == "daily" && module.updateOptions["policy"] == "all")
    }
}
