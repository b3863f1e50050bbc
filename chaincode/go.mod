module twinchain/chaincode

go 1.26.0
