using System.Collections.Frozen;
using NodeMesh.Contracts;
using NodeMesh.Identity;

namespace NodeMesh.Authz;

/// <summary>Validates policies from the configuration and compiles them; every error names its field path.</summary>
internal static class PolicyCompiler
{
    public static PolicySet Compile(IReadOnlyList<PolicyConfig> configs, string trustDomain, List<string> errors)
    {
        var policies = new List<AuthorizationPolicy>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < configs.Count; i++)
        {
            string at = $"policies[{i}]";
            PolicyConfig? config = configs[i];
            if (config is null)
            {
                errors.Add($"{at}: must be an object, not null");
                continue;
            }

            int before = errors.Count;
            if (!Config.ConfigLoader.IsName(config.Name ?? ""))
            {
                errors.Add($"{at}.name: '{Printable.Of(config.Name ?? "")}' must be 1-63 characters of a-z, 0-9, '-', '.'");
            }
            else if (!names.Add(config.Name!))
            {
                errors.Add($"{at}.name: policy '{config.Name}' is defined twice");
            }

            PolicyAction action = PolicyAction.Allow;
            switch (config.Action)
            {
                case "ALLOW":
                    break;
                case "DENY":
                    action = PolicyAction.Deny;
                    break;
                default:
                    errors.Add($"{at}.action: '{Printable.Of(config.Action ?? "")}' must be ALLOW or DENY");
                    break;
            }

            PolicySelector selector = CompileSelector(config.Selector, $"{at}.selector", trustDomain, errors);
            var rules = new List<PolicyRule>();
            IReadOnlyList<RuleConfig> ruleConfigs = config.Rules ?? [];
            for (int r = 0; r < ruleConfigs.Count; r++)
            {
                rules.Add(CompileRule(ruleConfigs[r], $"{at}.rules[{r}]", trustDomain, errors));
            }

            if (errors.Count == before)
            {
                policies.Add(new AuthorizationPolicy(config.Name!, action, config.DryRun, selector, rules));
            }
        }

        return new PolicySet(policies);
    }

    private static PolicySelector CompileSelector(SelectorConfig? config, string at, string trustDomain, List<string> errors)
    {
        if (config is null)
        {
            return new PolicySelector(null, null, null);
        }

        if (config.Namespace is not null && !IsNamespace(config.Namespace))
        {
            errors.Add($"{at}.namespace: '{Printable.Of(config.Namespace)}' is not a namespace name");
        }

        FrozenDictionary<string, string>? labels = null;
        if (config.Labels is not null)
        {
            foreach ((string key, string value) in config.Labels)
            {
                if (!IsLabel(key, allowSlash: true) || value is null || (value.Length > 0 && !IsLabel(value, allowSlash: false)))
                {
                    errors.Add($"{at}.labels: '{Printable.Of(key)}: {Printable.Of(value ?? "null")}' is not a valid label");
                }
            }

            labels = config.Labels.ToFrozenDictionary(StringComparer.Ordinal);
        }

        FrozenSet<SpiffeId>? identities = config.Identities is null ? null : Identities(config.Identities, $"{at}.identities", trustDomain, errors, allowAny: false, out _);
        return new PolicySelector(config.Namespace, labels, identities);
    }

    private static PolicyRule CompileRule(RuleConfig? config, string at, string trustDomain, List<string> errors)
    {
        if (config is null)
        {
            errors.Add($"{at}: must be an object, not null");
            return new PolicyRule(null, false, null, null, null, null, null, null, null);
        }

        SourceConfig? from = config.From;
        DestinationConfig? to = config.To;
        bool anyPrincipal = false;
        FrozenSet<SpiffeId>? principals = from?.Principals is null ? null : Identities(from.Principals, $"{at}.from.principals", trustDomain, errors, allowAny: true, out anyPrincipal);
        FrozenSet<SpiffeId>? notPrincipals = from?.NotPrincipals is null ? null : Identities(from.NotPrincipals, $"{at}.from.notPrincipals", trustDomain, errors, allowAny: false, out _);
        return new PolicyRule(
            anyPrincipal && principals!.Count == 0 ? null : principals,
            anyPrincipal,
            notPrincipals,
            Namespaces(from?.Namespaces, $"{at}.from.namespaces", errors),
            Namespaces(from?.NotNamespaces, $"{at}.from.notNamespaces", errors),
            Blocks(from?.IpBlocks, $"{at}.from.ipBlocks", errors),
            Blocks(from?.NotIpBlocks, $"{at}.from.notIpBlocks", errors),
            Ports(to?.Ports, $"{at}.to.ports", errors),
            Ports(to?.NotPorts, $"{at}.to.notPorts", errors))
        {
            RequestPrincipals = RequestPrincipals(from?.RequestPrincipals, $"{at}.from.requestPrincipals", errors, allowAny: true, out bool anyRequestPrincipal),
            AnyRequestPrincipal = anyRequestPrincipal,
            NotRequestPrincipals = RequestPrincipals(from?.NotRequestPrincipals, $"{at}.from.notRequestPrincipals", errors, allowAny: false, out _),
        };
    }

    private static FrozenSet<string>? RequestPrincipals(IReadOnlyList<string>? values, string at, List<string> errors, bool allowAny, out bool any)
    {
        any = false;
        if (values is null)
        {
            return null;
        }

        var principals = new List<string>();
        for (int i = 0; i < values.Count; i++)
        {
            if (allowAny && values[i] == "*")
            {
                any = true;
            }
            else if (values[i] is not { } value || !Tunnel.FlowHeader.IsPrincipal(value))
            {
                errors.Add($"{at}[{i}]: '{Printable.Of(values[i] ?? "null")}' is not a request principal (1-255 bytes, no control characters: ISSUER/SUBJECT or consumer:NAME)");
            }
            else
            {
                principals.Add(value);
            }
        }

        return principals.ToFrozenSet(StringComparer.Ordinal);
    }

    private static FrozenSet<SpiffeId> Identities(IReadOnlyList<string> values, string at, string trustDomain, List<string> errors, bool allowAny, out bool any)
    {
        any = false;
        var ids = new List<SpiffeId>();
        for (int i = 0; i < values.Count; i++)
        {
            if (allowAny && values[i] == "*")
            {
                any = true;
            }
            else if (!SpiffeId.TryParse(values[i], out SpiffeId? id, out string? error))
            {
                errors.Add($"{at}[{i}]: {error}");
            }
            else if (id.TrustDomain != trustDomain)
            {
                errors.Add($"{at}[{i}]: '{id}' is not in trust domain '{trustDomain}'");
            }
            else
            {
                ids.Add(id);
            }
        }

        return ids.ToFrozenSet();
    }

    private static FrozenSet<string>? Namespaces(IReadOnlyList<string>? values, string at, List<string> errors)
    {
        if (values is null)
        {
            return null;
        }

        for (int i = 0; i < values.Count; i++)
        {
            if (!IsNamespace(values[i] ?? ""))
            {
                errors.Add($"{at}[{i}]: '{Printable.Of(values[i] ?? "null")}' is not a namespace name");
            }
        }

        return values.Where(v => v is not null).ToFrozenSet(StringComparer.Ordinal);
    }

    private static List<Cidr>? Blocks(IReadOnlyList<string>? values, string at, List<string> errors)
    {
        if (values is null)
        {
            return null;
        }

        var blocks = new List<Cidr>();
        for (int i = 0; i < values.Count; i++)
        {
            if (Cidr.TryParse(values[i] ?? "", out Cidr? block, out string? error))
            {
                blocks.Add(block.Value);
            }
            else
            {
                errors.Add($"{at}[{i}]: {error}");
            }
        }

        return blocks;
    }

    private static FrozenSet<int>? Ports(IReadOnlyList<int>? values, string at, List<string> errors)
    {
        if (values is null)
        {
            return null;
        }

        for (int i = 0; i < values.Count; i++)
        {
            if (values[i] is < 1 or > 65535)
            {
                errors.Add($"{at}[{i}]: {values[i]} must be between 1 and 65535");
            }
        }

        return values.ToFrozenSet();
    }

    private static bool IsNamespace(string value) =>
        value.Length is > 0 and <= 63 && value.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c == '-')
        && value[0] != '-' && value[^1] != '-';

    private static bool IsLabel(string value, bool allowSlash) =>
        value.Length is > 0 and <= 253 && value.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' || (allowSlash && c == '/'));
}
