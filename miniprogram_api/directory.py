from miniprogram_api.routing import Api

api = Api()
