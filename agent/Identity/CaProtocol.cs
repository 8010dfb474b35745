using System.Buffers.Binary;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace NodeMesh.Identity;

/// <summary>
/// The CA service protocol: over TLS 1.3, one request per connection, each message a 4-byte big-endian length
/// and that many bytes of JSON. A node joins (<see cref="CaRequestKinds.Join"/>, no client certificate, a join
/// token) and then asks for certificates (<see cref="CaRequestKinds.Certificate"/>, authenticated by its node
/// certificate). Sizes are bounded on both sides.
/// </summary>
internal static class CaProtocol
{
    /// <summary>A request is a token, a name and a P-256 CSR: a few hundred bytes.</summary>
    public const int MaxRequestBytes = 16 * 1024;

    /// <summary>A response is a leaf, its chain and the trust bundle.</summary>
    public const int MaxResponseBytes = TrustBundle.MaxPemChars + 64 * 1024;

    public static async Task WriteAsync(Stream stream, byte[] payload, CancellationToken cancellationToken)
    {
        byte[] frame = new byte[4 + payload.Length];
        BinaryPrimitives.WriteInt32BigEndian(frame, payload.Length);
        payload.CopyTo(frame.AsSpan(4));
        await stream.WriteAsync(frame, cancellationToken);
        await stream.FlushAsync(cancellationToken);
    }

    /// <summary>Reads one message; null if the peer closed before sending one. Throws <see cref="InvalidDataException"/> on a bad length.</summary>
    public static async Task<byte[]?> ReadAsync(Stream stream, int maxBytes, CancellationToken cancellationToken)
    {
        byte[] prefix = new byte[4];
        int read = await stream.ReadAtLeastAsync(prefix, 4, throwOnEndOfStream: false, cancellationToken);
        if (read == 0)
        {
            return null;
        }

        if (read < 4)
        {
            throw new InvalidDataException("message ended inside its length");
        }

        int length = BinaryPrimitives.ReadInt32BigEndian(prefix);
        if (length <= 0 || length > maxBytes)
        {
            throw new InvalidDataException($"message length {length} is outside 1..{maxBytes}");
        }

        byte[] payload = new byte[length];
        await stream.ReadExactlyAsync(payload, cancellationToken);
        return payload;
    }

    public static byte[] Serialize(CaRequest request) => JsonSerializer.SerializeToUtf8Bytes(request, CaJsonContext.Default.CaRequest);

    public static byte[] Serialize(CaResponse response) => JsonSerializer.SerializeToUtf8Bytes(response, CaJsonContext.Default.CaResponse);

    /// <summary>Parses a request; throws <see cref="InvalidDataException"/> with the reason when it is not one.</summary>
    public static CaRequest ParseRequest(byte[] payload)
    {
        try
        {
            return JsonSerializer.Deserialize(payload, CaJsonContext.Default.CaRequest) ?? throw new InvalidDataException("request is null");
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"request is not valid JSON: {ex.Message}", ex);
        }
    }

    public static CaResponse ParseResponse(byte[] payload)
    {
        try
        {
            return JsonSerializer.Deserialize(payload, CaJsonContext.Default.CaResponse) ?? throw new InvalidDataException("response is null");
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"response is not valid JSON: {ex.Message}", ex);
        }
    }
}

internal static class CaRequestKinds
{
    /// <summary>A new node: a join token and a CSR for its node identity; no client certificate.</summary>
    public const string Join = "join";

    /// <summary>A joined node, authenticated by its node certificate: a CSR for one of its workloads' identities (or its own, to renew).</summary>
    public const string Certificate = "certificate";
}

internal sealed record CaRequest
{
    /// <summary><see cref="CaRequestKinds.Join"/> or <see cref="CaRequestKinds.Certificate"/>.</summary>
    public string Kind { get; init; } = "";

    /// <summary>Join: the join token.</summary>
    public string? Token { get; init; }

    /// <summary>Join: the name of the joining node.</summary>
    public string? Node { get; init; }

    /// <summary>Certificate: the SPIFFE id asked for.</summary>
    public string? Identity { get; init; }

    /// <summary>A PEM PKCS#10 request signed by a fresh P-256 key. Only its key is used; its names and extensions are ignored.</summary>
    public string Csr { get; init; } = "";
}

internal sealed record CaResponse
{
    /// <summary>Why the request was refused; null when a certificate was issued.</summary>
    public string? Error { get; init; }

    /// <summary>The issued leaf (PEM).</summary>
    public string? Certificate { get; init; }

    /// <summary>The certificates between the leaf and the root (PEM; empty without an intermediate).</summary>
    public string? Chain { get; init; }

    /// <summary>The roots the mesh trusts now (PEM), so nodes follow a root rotation.</summary>
    public string? TrustBundle { get; init; }
}

/// <summary>Source-generated (AOT-safe) JSON for the CA protocol. Unknown fields are errors.</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    MaxDepth = 4)]
[JsonSerializable(typeof(CaRequest))]
[JsonSerializable(typeof(CaResponse))]
internal sealed partial class CaJsonContext : JsonSerializerContext;
