using NodeMesh.Shim;

return await CniPlugin.RunAsync(Environment.GetEnvironmentVariable("CNI_COMMAND"), Console.OpenStandardInput(), Console.Out, Console.Error);
