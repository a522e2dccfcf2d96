import FleetFiles
import FleetProtocol
import FleetTestSupport
import Inventory
import ServerSetup
import Testing

@Suite("fleet.toml validation")
struct FleetConfigurationTests {
    /// A repository with hosts `a` and `b`, validated from `toml`.
    func parse(_ toml: String, hostDirectories: [String] = ["a", "b"]) throws -> FleetConfiguration {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        for host in hostDirectories { try FileIO.createDirectories(directory.path("hosts/\(host)")) }
        return try FleetConfiguration.parse(toml, file: directory.path("fleet.toml"), repository: directory.path)
    }

    func problems(_ toml: String, hostDirectories: [String] = ["a", "b"]) throws -> [String] {
        do {
            _ = try parse(toml, hostDirectories: hostDirectories)
            Issue.record("expected fleet.toml to be refused:\n\(toml)")
            return []
        } catch let error as InventoryError {
            return error.problems
        }
    }

    static let keyA = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ host-a"
    static let keyB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEZ0eN8Z0dL3K4PmbnuIgCnu3Ijd1hwFv4ErS/fCcWa/ host-b"

    @Test func defaultsApplyAndHostsOverride() throws {
        let configuration = try parse(
            """
            [server]
            address = "fleet.example.org"
            [defaults]
            operation = "boot"
            build = true
            [hosts.a]
            key = "\(Self.keyA)"
            [hosts.b]
            operation = "test"
            attribute = "b_prod"
            cache = true
            """)
        #expect(configuration.server.chrootRoot == "/srv/fleet")
        #expect(configuration.server.stateDirectory == "/var/lib/fleet")
        let a = try #require(configuration.host(named: "a"))
        let b = try #require(configuration.host(named: "b"))
        #expect(a.operation == .boot && a.build && !a.cache && a.attribute == "a" && a.unixUser == "fleet-a")
        #expect(a.publicKey?.type == "ssh-ed25519")
        #expect(b.operation == .test && b.build && b.cache && b.attribute == "b_prod" && b.publicKey == nil)
    }

    @Test(arguments: [
        "/srv/%u", "/srv/my fleet", "/srv/fleet\"x", "/srv/fleet#x", "/srv/fle\\et", "/srv/flé", "/srv/../etc",
    ])
    func serverPathsThatSSHDOrRsyslogWouldReadOtherwiseAreRefused(path: String) throws {
        let why = path.contains("..") ? "must not contain \"..\"" : "may hold only ASCII letters"
        for key in ["chroot_root", "state_dir"] {
            // A TOML literal string: the path as it is, backslashes and double quotes included.
            let found = try problems("[server]\n\(key) = '\(path)'\n")
            #expect(found.count == 1, "\(found)")
            #expect(found.first?.contains("fleet.toml: [server] key \"\(key)\": \(why)") == true, "\(found)")
        }
        let plain = try parse("[server]\nchroot_root = \"/srv/fleet-2.prod_x+y@z\"\n")
        #expect(plain.server.chrootRoot == "/srv/fleet-2.prod_x+y@z")
        // `fleet setup` holds paths to the same rule: what validates here is not refused there.
        #expect(throws: Never.self) { try PathSafety.check("/srv/fleet-2.prod_x+y@z/chroot") }
        #expect(throws: SetupError.self) { try PathSafety.check("/srv" + path.dropFirst(4) + "/chroot") }
        // A flag's or variable's path is made absolute first (so "/srv/../etc" is /etc, and allowed).
        if !path.contains("..") {
            #expect(throws: InventoryError.self) {
                try plain.overriding(chrootRoot: (path, "--chroot-root"), stateDirectory: nil)
            }
        }
    }

    @Test func unknownKeysAreNamedWithTheirTable() throws {
        let found = try problems(
            """
            colour = "blue"
            [server]
            adress = "x"
            [defaults]
            opration = "switch"
            [hosts.a]
            atribute = "a"
            """)
        #expect(found.count == 4)
        #expect(found.contains { $0.contains("the top level") && $0.contains("\"colour\"") })
        #expect(found.contains { $0.contains("[server]") && $0.contains("\"adress\"") && $0.contains("address") })
        #expect(found.contains { $0.contains("[defaults]") && $0.contains("\"opration\"") })
        #expect(found.contains { $0.contains("[hosts.a]") && $0.contains("\"atribute\"") })
        #expect(found.allSatisfy { $0.contains("fleet.toml") })
    }

    @Test(arguments: ["A", "a_b", "a.b", "-a", "..", "ü", String(repeating: "a", count: 64), "a b", "a/b"])
    func badHostNamesAreRefusedWithTheRule(name: String) throws {
        let found = try problems("[hosts.\"\(name)\"]\n")
        #expect(found.count == 1)
        #expect(found[0].contains("invalid host name") && found[0].contains("^[a-z0-9][a-z0-9-]{0,62}$"))
    }

    @Test(arguments: ["web-01", "0", String(repeating: "z", count: 63)])
    func goodHostNamesAreAccepted(name: String) throws {
        let configuration = try parse("[hosts.\(name)]\n", hostDirectories: [name])
        #expect(configuration.hosts.map(\.name.value) == [name])
        #expect(configuration.hosts[0].unixUser.count <= 32)
    }

    @Test func longHostNamesGetDistinctShortUnixUsers() throws {
        let first = String(repeating: "a", count: 60) + "1"
        let second = String(repeating: "a", count: 60) + "2"
        let configuration = try parse("[hosts.\(first)]\n[hosts.\(second)]\n", hostDirectories: [first, second])
        let users = configuration.hosts.map(\.unixUser)
        #expect(users[0] != users[1] && users.allSatisfy { $0.count <= 32 && $0.hasPrefix("fleet-") })
    }

    @Test(arguments: [
        ("notakey", "expected"),
        ("not a key", "not supported"),
        ("ssh-ed25519", "expected"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "not supported"),
        ("ssh-ed25519 !!!notbase64", "base64"),
        ("ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ==", "does not hold"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdw==", "51"),
    ])
    func malformedKeysAreRefused(key: String, reason: String) throws {
        let found = try problems("[hosts.a]\nkey = \"\(key)\"\n")
        #expect(found.count == 1)
        #expect(found[0].contains("[hosts.a]") && found[0].contains("\"key\"") && found[0].contains(reason))
    }

    @Test func duplicateKeysAreRefusedNamingBothHosts() throws {
        let found = try problems("[hosts.a]\nkey = \"\(Self.keyA)\"\n[hosts.b]\nkey = \"\(Self.keyA) other-comment\"\n")
        #expect(found.count == 1)
        #expect(found[0].contains("[hosts.b]") && found[0].contains("host a"))
    }

    @Test func missingHostDirectoryIsRefused() throws {
        let found = try problems("[hosts.a]\n[hosts.c]\n")
        #expect(found.count == 1)
        #expect(found[0].contains("[hosts.c]") && found[0].contains("hosts/c/"))
    }

    @Test func wrongTypesAndValuesAreRefused() throws {
        let found = try problems(
            """
            [server]
            port = 70000
            chroot_root = "relative/path"
            [hosts.a]
            operation = "dry-activate"
            build = "yes"
            attribute = "bad attr"
            [hosts.b]
            key = "\(Self.keyB)"
            key_file = "keys/b.pub"
            """)
        #expect(found.count == 6)
        #expect(found.contains { $0.contains("\"port\"") })
        #expect(found.contains { $0.contains("\"chroot_root\"") && $0.contains("absolute") })
        #expect(found.contains { $0.contains("\"operation\"") && $0.contains("switch, boot, test") })
        #expect(found.contains { $0.contains("\"build\"") && $0.contains("true or false") })
        #expect(found.contains { $0.contains("\"attribute\"") })
        #expect(found.contains { $0.contains("not both") })
    }

    @Test func syntaxErrorsNameLineAndColumn() throws {
        let found = try problems("[hosts.a]\nkey = \n")
        #expect(found.count == 1)
        #expect(found[0].contains("fleet.toml:2:"))
    }

    /// The TOML parser underneath passes text on as C strings: a raw NUL dropped the rest of the file (here the
    /// host `b`), an escaped one the rest of a value. Both are refused, naming the line; `\\u0000` (a backslash,
    /// then text) is not a NUL and stays accepted.
    @Test(arguments: [
        ("[server]\nstate_dir = \"/var/lib/fleet\"\n\0\n[hosts.b]\n", "fleet.toml:3:"),
        ("[server]\nstate_dir = \"/var/lib/fleet\\u0000/../../etc\"\n", "fleet.toml:2:"),
        ("[hosts.a]\nattribute = \"a\"\n[hosts.b]\nattribute = \"b\\\\\\U00000000\"\n", "fleet.toml:4:"),
    ])
    func aNULCharacterIsRefusedNotCutShort(toml: String, location: String) throws {
        let found = try problems(toml)
        #expect(found.count == 1, "\(found)")
        #expect(found.first?.contains(location) == true && found.first?.contains("NUL") == true, "\(found)")
    }

    @Test func anEscapedBackslashBeforeU0000IsText() throws {
        let configuration = try parse("[hosts.a]\n[hosts.b]\n[[hooks]]\ncommand = [\"/bin/echo\", \"a\\\\u0000\"]\n")
        #expect(configuration.hosts.count == 2)
        #expect(configuration.hooks.first?.command == ["/bin/echo", "a\\u0000"])
    }

    @Test func keyFilesAreReadRelativeToTheRepository() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try FileIO.createDirectories(directory.path("hosts/a"))
        try directory.makeDirectory("keys")
        try directory.writeFile("keys/a.pub", text: Self.keyA + "\n")
        try directory.writeFile("fleet.toml", text: "[hosts.a]\nkey_file = \"keys/a.pub\"\n")
        let configuration = try FleetConfiguration.load(repository: directory.path)
        #expect(configuration.hosts[0].publicKey?.comment == "host-a")
        try directory.writeFile("fleet.toml", text: "[hosts.a]\nkey_file = \"keys/missing.pub\"\n")
        #expect(throws: InventoryError.self) { try FleetConfiguration.load(repository: directory.path) }
    }
}
