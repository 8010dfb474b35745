using NodeMesh.App;

return await CommandLine.RunAsync(args);
