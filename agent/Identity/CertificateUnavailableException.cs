namespace NodeMesh.Identity;

/// <summary>
/// A certificate provider has no usable certificate for an identity (the CA refused or is unreachable and none
/// is cached, or the files are missing or malformed). Flows of that identity must be refused: fail closed.
/// </summary>
internal sealed class CertificateUnavailableException(string message, Exception? inner = null) : Exception(message, inner);
