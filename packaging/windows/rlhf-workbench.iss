; Inno Setup script: the Windows installer for RLHF Workbench.
; Built by .github/workflows/package-windows.yml after `python packaging\build.py`:
;     iscc /DAppVersion=0.1.0 packaging\windows\rlhf-workbench.iss
; Input: dist\rlhf-workbench\ (rlhf-workbench.exe, rlhf-workbench-cli.exe, _internal\).
; Output: dist\rlhf-workbench-<version>-windows-x64-setup.exe
; Per-user install by default (no administrator needed); the user data folder
; (%LOCALAPPDATA%\rlhf-workbench: projects, settings, the optional GPU runtime) is left alone
; on uninstall, so projects survive an upgrade.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "RLHF Workbench"
#define AppExe "rlhf-workbench.exe"

[Setup]
AppId={{6D0B1E52-3A57-4C1B-9E0F-6F1A2B7C9D41}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=RLHF Workbench team
DefaultDirName={autopf}\RLHF Workbench
DefaultGroupName={#AppName}
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=rlhf-workbench-{#AppVersion}-windows-x64-setup
Compression=lzma2/max
SolidCompression=yes
; Torch's DLLs make a big folder: disk spanning off, one setup.exe (under 2 GB with CPU torch).
DiskSpanning=no
WizardStyle=modern
UninstallDisplayIcon={app}\{#AppExe}
SetupIconFile=..\..\resources\rlhf-workbench.ico
ChangesAssociations=no

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "..\..\dist\rlhf-workbench\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\{#AppExe}"
Name: "{group}\{#AppName} self-test"; Filename: "{cmd}"; Parameters: "/k ""{app}\rlhf-workbench-cli.exe"" --selftest"
Name: "{group}\{cm:UninstallProgram,{#AppName}}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent
