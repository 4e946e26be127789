package testharness

import (
	"os"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// WriteKubeconfig writes a kubeconfig for cfg to path, for kubectl, the custos CLI and the manager binary the
// hack tools start: one cluster and one context, both called name, and one user "admin"; the current context
// is name. The server is cfg.Host; the CA, client certificate and key go in as inline data where cfg holds
// data and as file paths where it holds only files; a bearer token (or token file) goes in when cfg has one,
// next to or instead of the client certificate. cfg.Insecure and cfg.ServerName are kept too.
//
// The file holds credentials, so it is written with mode 0600, also when it exists already with another mode;
// a missing directory above it is created (0755), as clientcmd.WriteToFile does.
func WriteKubeconfig(path, name string, cfg *rest.Config) error {
	tls := cfg.TLSClientConfig
	cluster := &clientcmdapi.Cluster{
		Server:                   cfg.Host,
		CertificateAuthorityData: tls.CAData,
		InsecureSkipTLSVerify:    tls.Insecure,
		TLSServerName:            tls.ServerName,
	}
	if len(tls.CAData) == 0 {
		cluster.CertificateAuthority = tls.CAFile
	}
	user := &clientcmdapi.AuthInfo{
		ClientCertificateData: tls.CertData,
		ClientKeyData:         tls.KeyData,
		Token:                 cfg.BearerToken,
	}
	if len(tls.CertData) == 0 {
		user.ClientCertificate = tls.CertFile
	}
	if len(tls.KeyData) == 0 {
		user.ClientKey = tls.KeyFile
	}
	if cfg.BearerToken == "" {
		user.TokenFile = cfg.BearerTokenFile
	}

	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = cluster
	kc.AuthInfos["admin"] = user
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: "admin"}
	kc.CurrentContext = name
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return err
	}
	// WriteToFile creates a new file 0600 but leaves the mode of one that was there before.
	return os.Chmod(path, 0o600)
}
