public import FleetFiles
import SystemPackage

extension SHA256Hasher {
    /// The SHA-256 of a regular file's contents in lowercase hex, streamed (snapshots can be large) and without
    /// following a link at its last component: how a snapshot is checked against its manifest, wherever that
    /// happens. The hashing itself is FleetFiles' one streaming digest.
    public static func hex(ofFile path: String) throws(FileSystemError) -> String {
        let (descriptor, _) = try FileIO.openRegularNoFollow(path)
        return try FileIO.closeAfter(descriptor) { (descriptor) throws(FileSystemError) in
            try FileIO.sha256(of: FileDescriptor(rawValue: descriptor), path: path)
        }
    }

    /// The same digest as its 32 bytes (a NAR file against the Nix base32 `FileHash` of its narinfo).
    public static func digest(ofFile path: String) throws(FileSystemError) -> [UInt8] {
        let (descriptor, _) = try FileIO.openRegularNoFollow(path)
        return try FileIO.closeAfter(descriptor) { (descriptor) throws(FileSystemError) in
            try FileIO.sha256Digest(of: FileDescriptor(rawValue: descriptor), path: path)
        }
    }
}
