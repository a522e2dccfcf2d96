import FleetFiles

/// Removes the temporary directory a key pair was generated in.
public enum TestDirectoryCleanup {
    public static func removeParent(of path: String) {
        let parent = FileIO.split(path).directory
        if parent.hasPrefix("/tmp/fleet-test-") { try? FileIO.removeTree(parent) }
    }
}
